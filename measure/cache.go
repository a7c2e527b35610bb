package measure

// fileKey identifies a file: its device and inode numbers.
type fileKey struct {
	dev, ino uint64
}

// fileVersion is the collector's stand-in for the kernel's i_version,
// which user space cannot read: a write changes the modification and
// change times (in nanoseconds), and usually the size. A write within
// the same timestamp tick that keeps the size goes unnoticed: the file
// system's timestamp granularity (1 ns on ext4, coarser on some) is the
// limit.
type fileVersion struct {
	mtime, ctime int64
	size         uint64
}

// fileState is what the collector remembers of a file.
type fileState struct {
	version fileVersion
	// measured has bit n set once the file's current version has an
	// entry for PCR n (the kernel also measures once per PCR).
	measured uint64
	// mayToMToU is set by a read the policy measures: a later open for
	// write while readers remain is a ToMToU violation (once).
	mayToMToU bool
	// openWriters is set once an open_writers violation was recorded for
	// this version (the kernel limits them the same way).
	openWriters bool
}

// onceCache remembers measured files, up to a bound. When full, it
// forgets an eighth of its files (in map order, which is arbitrary), so
// a container that opens a million files keeps the collector's memory
// bounded; a forgotten file is measured again at its next use, which
// adds a duplicate entry but never loses one.
type onceCache struct {
	max   int
	files map[fileKey]*fileState
}

// newOnceCache returns a cache of at most max files (at least 16).
func newOnceCache(max int) *onceCache {
	if max < 16 {
		max = 16
	}
	return &onceCache{max: max, files: make(map[fileKey]*fileState)}
}

// get returns the state of the file's current version, creating it (and
// dropping any state of an older version).
func (c *onceCache) get(k fileKey, v fileVersion) *fileState {
	s := c.files[k]
	if s != nil && s.version == v {
		return s
	}
	if s != nil {
		*s = fileState{version: v}
		return s
	}

	if len(c.files) >= c.max {
		drop := c.max / 8
		for key := range c.files {
			delete(c.files, key)
			drop--
			if drop <= 0 {
				break
			}
		}
	}
	s = &fileState{version: v}
	c.files[k] = s
	return s
}

// peek returns the state of a file whatever its version, or nil.
func (c *onceCache) peek(k fileKey) *fileState {
	return c.files[k]
}

// len returns the number of files remembered.
func (c *onceCache) len() int {
	return len(c.files)
}
