package policy

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// OverflowID is the id a process sees for a host id its user namespace
// does not map (the kernel's default overflowuid and overflowgid).
const OverflowID = 65534

// IDMapping maps Size ids from ContainerID on to HostID on, as an OCI
// LinuxIDMapping and a line of /proc/PID/uid_map do.
type IDMapping struct {
	// ContainerID is the first id inside the user namespace.
	ContainerID uint32
	// HostID is the first id outside, on the host.
	HostID uint32
	// Size is the number of ids mapped.
	Size uint32
}

// IDMap is a user namespace's uid or gid map. An empty map is the
// identity: no user namespace.
type IDMap []IDMapping

// ParseIDMap reads /proc/PID/uid_map or gid_map text: lines of
// "inside outside count".
func ParseIDMap(text string) (IDMap, error) {
	var m IDMap
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("id map line %d: want 3 fields, have %d", n, len(f))
		}

		var v [3]uint32
		for i, s := range f {
			x, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("id map line %d: field %d: %w", n, i+1, err)
			}
			v[i] = uint32(x)
		}
		if v[2] == 0 || uint64(v[0])+uint64(v[2]) > 1<<32 ||
			uint64(v[1])+uint64(v[2]) > 1<<32 {
			return nil, fmt.Errorf("id map line %d: bad range", n)
		}
		m = append(m, IDMapping{ContainerID: v[0], HostID: v[1], Size: v[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("id map: %w", err)
	}
	return m, nil
}

// ToContainer returns the container's id for a host id; false when the
// map does not cover it.
func (m IDMap) ToContainer(host uint32) (uint32, bool) {
	if len(m) == 0 {
		return host, true
	}
	for _, e := range m {
		if host >= e.HostID && uint64(host) < uint64(e.HostID)+uint64(e.Size) {
			return e.ContainerID + (host - e.HostID), true
		}
	}
	return 0, false
}

// ToHost returns the host id of a container id; false when unmapped.
func (m IDMap) ToHost(id uint32) (uint32, bool) {
	if len(m) == 0 {
		return id, true
	}
	for _, e := range m {
		if id >= e.ContainerID && uint64(id) < uint64(e.ContainerID)+uint64(e.Size) {
			return e.HostID + (id - e.ContainerID), true
		}
	}
	return 0, false
}

// view maps a host id into the container, OverflowID when unmapped.
func (m IDMap) view(host uint32) uint32 {
	if id, ok := m.ToContainer(host); ok {
		return id
	}
	return OverflowID
}

// InContainer returns the access with its host ids (process and file)
// mapped into the container's view through its uid and gid maps.
//
// The kernel compares the host ids with the rule's values mapped to the
// host; for monotonic maps (every OCI runtime's) the two agree. An id the
// container cannot see becomes OverflowID here.
func (a Access) InContainer(uidMap, gidMap IDMap) Access {
	a.UID, a.EUID, a.SUID = uidMap.view(a.UID), uidMap.view(a.EUID), uidMap.view(a.SUID)
	a.FOwner = uidMap.view(a.FOwner)
	a.GID, a.EGID, a.SGID = gidMap.view(a.GID), gidMap.view(a.EGID), gidMap.view(a.SGID)
	a.FGroup = gidMap.view(a.FGroup)
	return a
}
