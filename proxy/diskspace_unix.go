//go:build unix

package proxy

import "syscall"

// diskFree is the space on dir's file system available to the proxy's user
// (statfs f_bavail: root's reserve is not the proxy's).
func diskFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
