package shim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// HooksDVersion is the schema version of the hooks.d files: the one that
// podman and CRI-O (containers/common's hooks package) read.
const HooksDVersion = "1.0.0"

// hooksDMatch is the annotation pattern the hooks.d files match on, both
// sides anchored so that io.imans.enable=truely or x.io.imans.enable do not:
// AnnotationEnable with its dots escaped (spelled out: the wrapper binary,
// which shares this package, starts faster without package regexp).
var hooksDMatch = map[string]string{
	`^io\.imans\.enable$`: "^true$",
}

// HooksDFile is one file for a hooks.d folder.
type HooksDFile struct {
	Name    string // file name, no folder
	Content []byte // JSON, ending with a newline
}

// HooksD returns the hooks.d files that make podman or CRI-O run the imans
// hooks, binary at imansPath, for containers annotated io.imans.enable=true:
// one file per stage, since each stage runs imans with its own arguments
// and a hooks.d file gives one command to all its stages.
func HooksD(imansPath string) ([]HooksDFile, error) {
	var files []HooksDFile
	for _, h := range Hooks(imansPath) {
		doc := struct {
			Version string `json:"version"`
			Hook    Hook   `json:"hook"`
			When    struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"when"`
			Stages []string `json:"stages"`
		}{Version: HooksDVersion, Hook: h, Stages: []string{h.Stage}}
		doc.When.Annotations = hooksDMatch

		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return nil, fmt.Errorf("hooks.d file for %s: %w", h.Stage, err)
		}
		files = append(files, HooksDFile{
			Name:    "imans-" + h.Args[len(h.Args)-1] + ".json",
			Content: buf.Bytes(),
		})
	}
	return files, nil
}

// ContainerdRuntime is the name of the containerd runtime handler (the
// RuntimeClass handler in Kubernetes) that runs containers through the
// imans runtime wrapper.
const ContainerdRuntime = "imans"

// ContainerdHandler returns the containerd configuration (version 2, as
// containerd 1.6 and 1.7 read it) of the imans runtime handler: the runc
// v2 shim with the wrapper at wrapperPath as its binary, and the imans
// annotations passed from pods and containers to the OCI spec.
func ContainerdHandler(wrapperPath string) string {
	const section = `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.` +
		ContainerdRuntime
	return "version = 2\n\n" +
		"[" + section + "]\n" +
		"  runtime_type = \"io.containerd.runc.v2\"\n" +
		"  pod_annotations = [\"io.imans.*\"]\n" +
		"  container_annotations = [\"io.imans.*\"]\n\n" +
		"[" + section + ".options]\n" +
		"  BinaryName = " + strconv.Quote(wrapperPath) + "\n"
}
