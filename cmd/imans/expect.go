package main

import (
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/imans-project/imans/hook"
	"github.com/imans-project/imans/ima"
	"github.com/imans-project/imans/internal/atomicfile"
	"github.com/imans-project/imans/policy"
	"github.com/imans-project/imans/report"
)

// expectCommand is `imans expect --from-report ID|FILE`: the annotations
// that make the same run pass, learnt from a trusted run's report.
func expectCommand() *cli.Command {
	return &cli.Command{
		Name:  "expect",
		Usage: "print the io.imans.* annotations that make a recorded run pass",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from-report", Required: true,
				Usage: "container id or report file of a trusted run"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object of annotations"},
			&cli.BoolFlag{Name: "no-pcr10", Usage: "leave PCR 10 out: for containers " +
				"whose processes run side by side, which measure in another order each run"},
			&cli.BoolFlag{Name: "podman", Usage: "print them as podman run arguments, " +
				"quoted for podman's CSV and for sh, on one line"},
			&cli.StringFlag{Name: "policy", Usage: "the run's io.imans.policy (text or " +
				"@name), when its bundle is gone; checked against the report"},
			&cli.StringFlag{Name: "digests-file", Usage: "write the digests to this file " +
				"as a Keylime runtime policy and print " + policy.AnnotationExpectDigests +
				"=@NAME (its name) instead of them inline: for a run too large for the " +
				"inline annotation; the hook reads @NAME from " + expectationsDir},
		},
		Action: expectFromReport,
	}
}

func expectFromReport(c *cli.Context) error {
	if c.Bool("json") && c.Bool("podman") {
		return cli.Exit("imans expect: --json and --podman are two forms of the "+
			"same output: give one", 2)
	}
	from := c.String("from-report")
	r, err := reportLoad(from)
	if err != nil {
		return err
	}
	ann, err := learnAnnotations(r, from, learnOptions{
		policy:      c.String("policy"),
		policyGiven: c.IsSet("policy"),
		noPCR10:     c.Bool("no-pcr10"),
		digestsFile: c.String("digests-file"),
	})
	if err != nil {
		return err
	}

	if c.Bool("json") {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ann)
	}
	if c.Bool("podman") {
		printPodman(os.Stdout, ann)
		return nil
	}
	for _, k := range sortedKeys(ann) {
		fmt.Printf("%s=%s\n", k, ann[k])
	}
	return nil
}

// learnOptions are the choices of imans expect besides the report. The
// zero value learns the digests inline and PCR 10, with the run's policy
// read from its bundle.
type learnOptions struct {
	// policy is the run's io.imans.policy, used when policyGiven.
	policy      string
	policyGiven bool
	// noPCR10 leaves the PCR 10 expectations out.
	noPCR10 bool
	// digestsFile, when set, receives the digests as a Keylime runtime
	// policy, and the annotation names it (@name) instead of holding them.
	digestsFile string
}

// learnAnnotations returns the annotations that make the run of report r,
// named name (as the user gave it), pass: refused when r is incomplete,
// and when they would not reach the next run's checks whole.
func learnAnnotations(r *report.Report, name string, o learnOptions) (map[string]string,
	error) {
	if err := checkComplete(r, name); err != nil {
		return nil, err
	}
	ann, err := expectAnnotationsPolicy(r, r.Info.BinaryLog, o.policy, o.policyGiven)
	if err != nil {
		return nil, err
	}
	if o.noPCR10 {
		for k := range ann {
			if strings.HasPrefix(k, policy.AnnotationExpectPCR10) {
				delete(ann, k)
			}
		}
	}
	if o.digestsFile != "" {
		if err := writeDigestsFile(ann, o.digestsFile); err != nil {
			return nil, err
		}
	}
	if err := checkAnnotationSizes(ann, hook.MaxStateSize); err != nil {
		return nil, err
	}
	return ann, nil
}

// checkComplete refuses a report that is incomplete. Its evidence is
// partial (nothing measured, a collector that died, a list the TPM does
// not vouch for), and annotations learnt from it would hold the next run
// to that part: an empty digests object and the PCR 10 of an empty list
// from a run that measured nothing. A learning run's report is normally
// "fail", every file unexpected, and teaches well.
func checkComplete(r *report.Report, name string) error {
	if r.Verdict != report.Incomplete && len(r.Incomplete) == 0 {
		return nil
	}
	reasons := make([]string, len(r.Incomplete))
	for i, why := range r.Incomplete {
		reasons[i] = strconv.Quote(why)
	}
	if len(reasons) == 0 {
		reasons = []string{"no reason recorded"}
	}
	return fmt.Errorf("expect: report %s is incomplete, so there is nothing to learn "+
		"from it: %s", name, strings.Join(reasons, "; "))
}

// expectationsDir is the folder the hook reads io.imans.expect.digests=@name
// from.
const expectationsDir = policy.DefaultConfigDir + "/expectations"

// stateOverhead bounds what an OCI state holds besides the annotations
// imans expect prints: its version, id, status and pid, a bundle path of
// up to PATH_MAX, and a few annotations of the engine's own.
const stateOverhead = 8 << 10

// checkAnnotationSizes refuses annotations the next run's hook could not
// take: an inline digests value over policy.MaxDigestsSize, or annotations
// that would make the OCI state, which carries all of them JSON-escaped
// once more, larger than stateLimit, what the hook reads of it.
func checkAnnotationSizes(ann map[string]string, stateLimit int) error {
	advice := fmt.Sprintf("write the digests to a file with --digests-file %s/NAME, "+
		"which prints %s=@NAME instead", expectationsDir, policy.AnnotationExpectDigests)
	if n := len(ann[policy.AnnotationExpectDigests]); n > policy.MaxDigestsSize {
		return fmt.Errorf("expect: the %s annotation would be %d bytes, over its limit "+
			"of %d for an inline value: %s", policy.AnnotationExpectDigests, n,
			policy.MaxDigestsSize, advice)
	}

	inState, err := json.Marshal(ann)
	if err != nil {
		return fmt.Errorf("expect: %w", err)
	}
	if n := len(inState) + stateOverhead; n > stateLimit {
		return fmt.Errorf("expect: the annotations would make an oci state of about %d "+
			"bytes, over the %d the hook reads: %s", n, stateLimit, advice)
	}
	return nil
}

// writeDigestsFile writes the learnt digests of ann to path as a Keylime
// runtime policy, the form io.imans.expect.digests=@name reads, and puts
// that @name in their place. The file is checked as the hook will read it
// before it is written; one outside the expectations folder is written
// all the same, with a warning, to be copied there.
func writeDigestsFile(ann map[string]string, path string) error {
	name := filepath.Base(path)
	if !policy.ValidName(name) || strings.HasSuffix(path, "/") {
		return fmt.Errorf("expect: --digests-file %s: want a file path, whose name "+
			"becomes @name", path)
	}
	// Keylime's verifier takes bare hex digests; imans reads both forms.
	var digests map[string][]string
	if err := json.Unmarshal([]byte(ann[policy.AnnotationExpectDigests]), &digests); err != nil {
		return fmt.Errorf("expect: --digests-file %s: %w", path, err)
	}
	for _, list := range digests {
		for i, d := range list {
			list[i] = policy.KeylimeDigest(d)
		}
	}
	inner, err := json.Marshal(digests)
	if err != nil {
		return fmt.Errorf("expect: --digests-file %s: %w", path, err)
	}
	body := []byte(`{"meta":{"version":1},"digests":` + string(inner) + "}\n")
	if len(body) > policy.MaxExpectFileSize {
		return fmt.Errorf("expect: --digests-file %s: %d bytes, over the limit of %d "+
			"of an expectations file", path, len(body), policy.MaxExpectFileSize)
	}
	if _, err := policy.ParseKeylime(body); err != nil {
		return fmt.Errorf("expect: --digests-file %s: the hook would refuse it: %w",
			path, err)
	}

	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return fmt.Errorf("expect: --digests-file %s: no folder %s to write it in",
			path, filepath.Dir(path))
	}
	// Expectations are no secret; the hook may run as another user.
	if err := atomicfile.Write(path, body, atomicfile.Options{Perm: 0o644}); err != nil {
		return fmt.Errorf("expect: --digests-file: %w", err)
	}
	if dir, err := filepath.Abs(filepath.Dir(path)); err != nil || dir != expectationsDir {
		fmt.Fprintf(expectWarn, "imans: expect: warning: %s is not in %s, the only "+
			"folder %s=@%s is read from: copy it there\n", path, expectationsDir,
			policy.AnnotationExpectDigests, name)
	}
	ann[policy.AnnotationExpectDigests] = "@" + name
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// printPodman writes the annotations as `--annotation=...` words on one
// line: podman reads each --annotation value as CSV, so a value with a
// comma, a quote or a newline (the digests' JSON, a policy) becomes one
// quoted CSV field; each word is then single-quoted for sh, so that
// `eval "podman run $(imans expect --podman ...) IMAGE"` passes them whole.
func printPodman(w io.Writer, ann map[string]string) {
	words := make([]string, 0, len(ann))
	for _, k := range sortedKeys(ann) {
		var field strings.Builder
		cw := csv.NewWriter(&field)
		cw.Write([]string{k + "=" + ann[k]}) // a strings.Builder does not fail
		cw.Flush()
		value := strings.TrimSuffix(field.String(), "\n")
		words = append(words, "'--annotation="+strings.ReplaceAll(value, "'", `'\''`)+"'")
	}
	fmt.Fprintln(w, strings.Join(words, " "))
}

// expectAnnotationsPolicy builds the expectation annotations of a report:
// the digest of every file its list measured, and PCR 10 of each bank as
// the TPM read it, with the run's backend and mode from its bundle and its
// policy annotation either policyAnn (when given is true) or read from the
// bundle. Only a report whose list the TPM vouched for can teach.
func expectAnnotationsPolicy(r *report.Report, listPath, policyAnn string,
	given bool) (map[string]string, error) {
	if !r.TPM.Vouched() {
		return nil, errors.New("expect: the report's list is not vouched for by its " +
			"tpm (incomplete run): nothing to learn from it")
	}
	if listPath == "" {
		return nil, errors.New("expect: the report keeps no copy of its list")
	}
	f, err := openList(listPath)
	if err != nil {
		return nil, fmt.Errorf("expect: %w", err)
	}
	defer f.Close()

	// The copy of the list is the host's: learn from it only when it is the
	// list whose sha256 the report took along with the TPM's values.
	sum := sha256.New()
	digests := map[string][]string{}
	var violations []string
	rd := ima.NewBinaryReader(io.TeeReader(f, sum))
	for i := 0; ; i++ {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("expect: list %s entry %d: %w", listPath, i, err)
		}
		if e.IsViolation() {
			name, _ := e.FileName()
			violations = append(violations, fmt.Sprintf("%q (entry %d)", name, i))
			continue
		}
		name, err := e.FileName()
		if err != nil {
			return nil, fmt.Errorf("expect: list %s entry %d: %w", listPath, i, err)
		}
		algo, d, err := e.FileDigest()
		if err != nil {
			return nil, fmt.Errorf("expect: list %s entry %d: %w", listPath, i, err)
		}
		// Names JSON spells the same are one path of the annotation: their
		// digests go in one list, since a path given twice is refused.
		name = report.JSONSpelling(name)
		digest := string(algo) + ":" + hex.EncodeToString(d)
		if !containsString(digests[name], digest) {
			digests[name] = append(digests[name], digest)
		}
	}
	if _, err := io.Copy(sum, f); err != nil {
		return nil, fmt.Errorf("expect: %w", err)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != r.TPM.LogSHA256 {
		return nil, fmt.Errorf("expect: list %s has sha256 %s, not the run's list "+
			"(log_sha256 %s in the report)", listPath, got, r.TPM.LogSHA256)
	}
	if len(violations) > 0 {
		fmt.Fprintf(expectWarn, "imans: expect: warning: the run has %d violation(s), "+
			"%s: every run with them fails, and annotations cannot exclude a path; "+
			"put the digests in an expectations file (--digests-file), add "+
			"\"excludes\" to it, or stop the writer opening the file while it is read\n",
			len(violations), strings.Join(violations, ", "))
	}
	if changed := changedPaths(r); len(changed) > 0 {
		fmt.Fprintf(expectWarn, "imans: expect: warning: the run failed its own "+
			"expectations, file(s) changed: %s; these annotations accept what it "+
			"measured, the changes included\n", strings.Join(changed, ", "))
	}
	body, err := json.Marshal(digests)
	if err != nil {
		return nil, err
	}

	ann, err := runAnnotations(r, policyAnn, given)
	if err != nil {
		return nil, err
	}
	ann[policy.AnnotationEnable] = "true"
	ann[policy.AnnotationExpectDigests] = string(body)
	for bank, v := range r.TPM.PCR10 {
		if _, replayed := r.TPM.ReplayPCR10[bank]; !replayed {
			// Only the banks the list vouches for, which are the
			// ones the hook reads and expects.
			continue
		}
		ann[policy.AnnotationExpectPCR10+bank] = v
	}
	return ann, nil
}

// changedPaths lists the files the report found changed from its
// expectations, each once, in list order.
func changedPaths(r *report.Report) []string {
	var out []string
	for _, f := range r.Findings {
		if f.Kind == report.ChangedFile && !containsString(out, f.Path) {
			out = append(out, f.Path)
		}
	}
	return out
}

// expectWarn receives the warnings of imans expect.
var expectWarn io.Writer = os.Stderr

// runKeys are the annotations that decide what is measured and how, as
// opposed to what is expected: the next run must keep them to measure the
// same files in the same order.
var runKeys = []string{policy.AnnotationPolicy, policy.AnnotationBackend, policy.AnnotationMode}

// runAnnotations returns the run's own policy, backend and mode
// annotations, read again from its bundle's config.json (the policy is
// policyAnn instead when given), and checks that they give the policy the
// report names (by its sha256). A run with the built-in policy needs no
// bundle; a run with another policy whose text cannot be found again is an
// error, since expectations learnt under one policy never pass under
// another.
func runAnnotations(r *report.Report, policyAnn string, given bool) (map[string]string,
	error) {
	builtin := sha256.Sum256([]byte(policy.BuiltinText()))
	isBuiltin := r.Info.PolicySHA256 == hex.EncodeToString(builtin[:])

	ann := map[string]string{}
	bundleAnn, err := bundleAnnotations(r.Info.Bundle)
	switch {
	case err == nil:
		for _, k := range runKeys {
			if v, ok := bundleAnn[k]; ok {
				ann[k] = v
			}
		}
	case !given && !isBuiltin:
		return nil, fmt.Errorf("expect: the run's policy (sha256 %s) is not the built-in "+
			"one and cannot be read again (%w): give it with --policy (the run's %s)",
			r.Info.PolicySHA256, err, policy.AnnotationPolicy)
	}
	// The report knows the mode the run had; the bundle may have changed.
	switch r.Info.Mode {
	case string(policy.ModeEnforce):
		ann[policy.AnnotationMode] = r.Info.Mode
	case string(policy.ModeAudit):
		delete(ann, policy.AnnotationMode) // the default
	}

	from := "bundle " + r.Info.Bundle
	if given {
		ann[policy.AnnotationPolicy] = policyAnn
		from = "--policy"
	}

	spec, err := policy.SpecFromAnnotations(ann, "")
	if err != nil {
		return nil, fmt.Errorf("expect: %s: %w", from, err)
	}
	text := spec.PolicyText
	if text == "" && spec.Policy != nil {
		text = spec.Policy.Render()
	}
	sum := sha256.Sum256([]byte(text))
	if got := hex.EncodeToString(sum[:]); got != r.Info.PolicySHA256 {
		return nil, fmt.Errorf("expect: the run's policy (sha256 %s) is not the one %s "+
			"gives (sha256 %s): give the run's %s with --policy",
			r.Info.PolicySHA256, from, got, policy.AnnotationPolicy)
	}
	return ann, nil
}

// bundleAnnotations reads the annotations of a bundle's config.json.
func bundleAnnotations(bundle string) (map[string]string, error) {
	if bundle == "" {
		return nil, errors.New("the report names no bundle")
	}
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var config struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(data, &config); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(bundle, "config.json"), err)
	}
	return config.Annotations, nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
