package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The JSON objects imans reads expectations from (the digests annotation,
// a Keylime runtime policy) are walked key by key with a json.Decoder
// rather than decoded into a map: encoding/json keeps the last of two
// equal keys without a word, so an object giving a path twice would have
// its first list of digests replaced by a second one that a reader of the
// annotation, who sees the first, easily overlooks. A repeated key is
// refused instead, naming the key and where its second copy ends.

// decodeObject reads one JSON object from dec and calls member with each
// key, in order; member must read the key's value from dec. noun names
// the keys in errors ("path", "member"). seen, when not nil, reports
// whether member has had a key already (a caller filling a map can tell
// at no cost); when nil, decodeObject keeps the keys itself. A null where
// the object should be is errNull, for callers that take it as absent.
func decodeObject(dec *json.Decoder, noun string, seen func(key string) bool,
	member func(key string) error) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		return errNull
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("want a JSON object, have %s", tokenKind(tok))
	}

	if seen == nil {
		keys := map[string]struct{}{}
		seen = func(key string) bool {
			_, ok := keys[key]
			keys[key] = struct{}{}
			return ok
		}
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			// The decoder refuses anything else in a key's place; this
			// only keeps a broken invariant from becoming a panic.
			return fmt.Errorf("want a key, have %s", tokenKind(tok))
		}
		if seen(key) {
			return &DuplicateKeyError{Noun: noun, Key: key, End: dec.InputOffset()}
		}
		if err := member(key); err != nil {
			return err
		}
	}

	_, err = dec.Token() // the closing '}'
	return err
}

// checkEnd checks that nothing but white space follows the value dec has
// read. dec.More cannot tell: it takes a stray '}' or ']' for the end of
// an enclosing value, and there is none at the top.
func checkEnd(dec *json.Decoder) error {
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("data after the JSON object, at offset %d", dec.InputOffset())
	}
	return nil
}

// DuplicateKeyError is a key given twice in a JSON object of expectations.
type DuplicateKeyError struct {
	// Noun is what the object's keys are: "path" or "member".
	Noun string
	// Key is the key, as decoded.
	Key string
	// End is the offset in the JSON text just past its second copy.
	End int64
}

// Error names the key, what it is, and where its second copy ends.
func (e *DuplicateKeyError) Error() string {
	return fmt.Sprintf("%s %q is given twice (the second ends at offset %d)",
		e.Noun, ShortWord(e.Key), e.End)
}

// errNull is returned by decodeObject for a null in place of the object.
var errNull = errors.New("have null")

// digestObject is a JSON object of path to list of digests, as decoded.
type digestObject struct {
	// lists maps a path to its digests as written; a null list is nil,
	// which normalizeDigests refuses as no digest.
	lists map[string][]string
	// paths are the keys in the order of the text, for errors that name
	// the first bad path as a reader of the text finds it.
	paths []string
}

// decodeDigestObject reads a JSON object of path to list of digests from
// dec, refusing a path given twice.
func decodeDigestObject(dec *json.Decoder) (*digestObject, error) {
	d := &digestObject{lists: map[string][]string{}}
	seen := func(path string) bool {
		_, ok := d.lists[path]
		return ok
	}
	err := decodeObject(dec, "path", seen, func(path string) error {
		var list []string
		if err := decodeStringList(dec, &list); err != nil {
			return fmt.Errorf("path %q: %w", ShortWord(path), err)
		}
		d.lists[path] = list
		d.paths = append(d.paths, path)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// decodeStringList reads a JSON list of strings (or null) from dec into
// list. A type error names the value found instead.
func decodeStringList(dec *json.Decoder, list *[]string) error {
	err := dec.Decode(list)
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Errorf("want a list of digest strings, found a JSON %s", typeErr.Value)
	}
	return err
}

// tokenKind names the JSON value a token starts, for errors.
func tokenKind(tok json.Token) string {
	switch t := tok.(type) {
	case nil:
		return "null"
	case bool:
		return "true or false"
	case float64, json.Number:
		return "a number"
	case string:
		return "a string"
	case json.Delim:
		switch t {
		case '{':
			return "an object"
		case '[':
			return "a list"
		}
		return fmt.Sprintf("%q", rune(t))
	}
	return fmt.Sprintf("%T", tok)
}
