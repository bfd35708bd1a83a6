package audit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
)

// bbolt reads its file through a memory map with unchecked pointer
// arithmetic: a page id past the end of a truncated file, or an element
// offset pointing outside its page, makes it read unmapped memory (a
// SIGBUS/SIGSEGV that kills the process) or trip an assertion (a panic).
// So before bbolt sees a file, checkStructure walks it with plain bounded
// reads and refuses one that bbolt could not walk safely; guard turns what
// may still happen later (the file shrinking under a running process) into
// an error.
//
// The on-disk layout read here is bbolt's (format version 2, native byte
// order, which is little-endian on every platform ztp supports): a 16-byte
// page header (id u64, flags u16, count u16, overflow u32), then elements.

const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	pageHeaderSize   = 16
	elementSize      = 16 // branch (pos u32, ksize u32, pgid u64) and leaf (flags, pos, ksize, vsize u32)
	metaSize         = 64 // magic, version, pageSize, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	metaPageFlag     = 0x04
	freelistPageFlag = 0x10
	bucketLeafFlag   = 0x01
	noFreelist       = ^uint64(0)
	// maxPageSize bounds the page size a meta page may claim; bbolt uses the
	// OS page size (4 KiB, 16 KiB or 64 KiB).
	maxPageSize = 64 << 10
	minPageSize = 512
)

var le = binary.LittleEndian

// ErrDamaged is returned by Open, OpenReader and reads when the file's page
// structure is damaged (truncated, overwritten): bbolt could not read it
// safely, so it is not read at all. The message names the damage.
var ErrDamaged = errors.New("audit: file damaged")

type boltMeta struct {
	page                int // 0 or 1
	pageSize            uint32
	root, freelist, hwm uint64
	txid                uint64
	err                 error // why the page is invalid; nil: valid
}

// structure is what checkStructure learned: the meta bbolt will use and
// damage that bbolt tolerates (one invalid meta page) but an auditor must
// hear about.
type structure struct {
	meta     boltMeta
	warnings []string
}

func damaged(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrDamaged, path, fmt.Sprintf(format, args...))
}

// checkStructure checks the bbolt file at path without mapping it: both
// meta pages, the file size against the high-water mark of the meta bbolt
// would use, and every page reachable from the root bucket and the
// freelist — ids below the high-water mark, headers naming their own id and
// a branch, leaf or freelist type, elements, keys and values inside their
// page, no page reached twice or both reached and free. A file that passes
// can be walked by bbolt without leaving the file. An empty file (0 bytes)
// is reported as such; callers decide what it means.
func checkStructure(f *os.File, path string) (*structure, error) {
	return walkStructure(f, path, nil)
}

func walkStructure(f *os.File, path string, onPage func(id uint64, flags uint16)) (*structure, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	size := fi.Size()
	if size == 0 {
		return nil, damaged(path, "the file is empty (0 bytes): truncated to nothing, or never written")
	}
	metas := [2]boltMeta{readMeta(f, size, 0, 0), {}}
	// bbolt finds the second meta page at the first one's page size, or at
	// 4 KiB when the first is unreadable.
	ps := uint32(4096)
	if metas[0].err == nil {
		ps = metas[0].pageSize
	}
	metas[1] = readMeta(f, size, 1, ps)
	st := &structure{}
	a, b := metas[0], metas[1]
	if b.txid > a.txid {
		a, b = b, a
	}
	switch {
	case a.err == nil:
		st.meta = a
		if b.err != nil {
			st.warnings = append(st.warnings, fmt.Sprintf("meta page %d is invalid (%v); bbolt reads the file as of meta page %d, transaction %d: a torn write after power loss, or tampering", b.page, b.err, a.page, a.txid))
		}
	case b.err == nil:
		st.meta = b
		st.warnings = append(st.warnings, fmt.Sprintf("meta page %d is invalid (%v); bbolt reads the file as of meta page %d, transaction %d: a torn write after power loss, or tampering", a.page, a.err, b.page, b.txid))
	default:
		return nil, damaged(path, "both meta pages are invalid (page 0: %v; page 1: %v)", metas[0].err, metas[1].err)
	}
	m := st.meta
	if need := int64(m.hwm) * int64(m.pageSize); need > size || m.hwm > uint64(size)/uint64(m.pageSize) {
		return nil, damaged(path, "truncated: the meta page says the file holds %d pages of %d bytes (%d bytes), but it has %d bytes", m.hwm, m.pageSize, need, size)
	}
	w := &walker{f: f, path: path, ps: int64(m.pageSize), hwm: m.hwm, seen: make([]uint64, (m.hwm+63)/64), onPage: onPage}
	w.mark(0, 0)
	w.mark(1, 0)
	var free []uint64
	if m.freelist != noFreelist {
		if free, err = w.freelist(m.freelist); err != nil {
			return nil, err
		}
	}
	if err := w.bucket(m.root, nil, "root bucket"); err != nil {
		return nil, err
	}
	for _, id := range free {
		if w.seen[id/64]&(1<<(id%64)) != 0 {
			return nil, damaged(path, "page %d is both in use and on the freelist", id)
		}
	}
	return st, nil
}

// readMeta reads and validates meta page n (at page size ps; 0 for page 0,
// which starts at offset 0 whatever the page size).
func readMeta(f *os.File, size int64, n int, ps uint32) boltMeta {
	m := boltMeta{page: n}
	off := int64(n) * int64(ps)
	buf := make([]byte, pageHeaderSize+metaSize)
	if off+int64(len(buf)) > size {
		m.err = fmt.Errorf("beyond the end of the %d-byte file", size)
		return m
	}
	if _, err := f.ReadAt(buf, off); err != nil {
		m.err = err
		return m
	}
	d := buf[pageHeaderSize:]
	h := fnv.New64a()
	h.Write(d[:56])
	switch {
	case le.Uint32(d[0:]) != boltMagic:
		m.err = errors.New("no bbolt magic number")
	case le.Uint32(d[4:]) != boltVersion:
		m.err = fmt.Errorf("bbolt format version %d, want %d", le.Uint32(d[4:]), boltVersion)
	case le.Uint64(d[56:]) != h.Sum64():
		m.err = errors.New("checksum mismatch")
	case le.Uint16(buf[8:]) != metaPageFlag:
		m.err = fmt.Errorf("page type %#x, want meta", le.Uint16(buf[8:]))
	}
	if m.err != nil {
		return m
	}
	m.pageSize = le.Uint32(d[8:])
	m.root, m.freelist, m.hwm, m.txid = le.Uint64(d[16:]), le.Uint64(d[32:]), le.Uint64(d[40:]), le.Uint64(d[48:])
	switch {
	case m.pageSize < minPageSize || m.pageSize > maxPageSize || m.pageSize&(m.pageSize-1) != 0:
		m.err = fmt.Errorf("page size %d", m.pageSize)
	case n == 1 && m.pageSize != ps:
		m.err = fmt.Errorf("page size %d, but it was found at %d", m.pageSize, ps)
	case m.hwm < 2:
		m.err = fmt.Errorf("high-water mark %d below the meta pages", m.hwm)
	case m.root < 2 || m.root >= m.hwm:
		m.err = fmt.Errorf("root page %d outside 2..%d", m.root, m.hwm-1)
	case m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.hwm):
		m.err = fmt.Errorf("freelist page %d outside 2..%d", m.freelist, m.hwm-1)
	}
	return m
}

type walker struct {
	f    *os.File
	path string
	ps   int64
	hwm  uint64
	seen []uint64 // bit per page: reached
	// win is the file from winOff on, read ahead (see read).
	win    []byte
	winOff int64
	// onPage, when set, is told about every page read (tests find pages
	// of a type with it).
	onPage func(id uint64, flags uint16)
}

// mark records pages id … id+overflow as reached; a page reached twice
// would make bbolt loop or share a page between two owners.
func (w *walker) mark(id uint64, overflow uint32) error {
	for p := id; p <= id+uint64(overflow); p++ {
		if w.seen[p/64]&(1<<(p%64)) != 0 {
			return damaged(w.path, "page %d is reached twice", p)
		}
		w.seen[p/64] |= 1 << (p % 64)
	}
	return nil
}

// page reads page id with its overflow pages, checking that all of it lies
// below the high-water mark (and so inside the file) and that its header
// names it.
func (w *walker) page(id uint64, what string) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, damaged(w.path, "%s: page id %d outside 2..%d", what, id, w.hwm-1)
	}
	hdr, err := w.read(int64(id)*w.ps, w.ps)
	if err != nil {
		return nil, damaged(w.path, "%s: page %d: %v", what, id, err)
	}
	if got := le.Uint64(hdr); got != id {
		return nil, damaged(w.path, "%s: page %d calls itself page %d (overwritten)", what, id, got)
	}
	overflow := le.Uint32(hdr[12:])
	if uint64(overflow) >= w.hwm-id {
		return nil, damaged(w.path, "%s: page %d with %d overflow pages runs past the high-water mark %d", what, id, overflow, w.hwm)
	}
	if err := w.mark(id, overflow); err != nil {
		return nil, err
	}
	if w.onPage != nil {
		w.onPage(id, le.Uint16(hdr[8:]))
	}
	if overflow == 0 {
		return hdr, nil
	}
	buf, err := w.read(int64(id)*w.ps, (int64(overflow)+1)*w.ps)
	if err != nil {
		return nil, damaged(w.path, "%s: page %d: %v", what, id, err)
	}
	return buf, nil
}

// readWindow is how much read fetches at once: the tree of an append-only
// log lies mostly in file order, so one read serves many pages.
const readWindow = 1 << 20

// read returns a copy of n bytes at off, served from a window of the file
// read ahead.
func (w *walker) read(off, n int64) ([]byte, error) {
	if off < w.winOff || off+n > w.winOff+int64(len(w.win)) {
		size := max(n, readWindow)
		if w.win == nil || int64(cap(w.win)) < size {
			w.win = make([]byte, size)
		}
		w.win = w.win[:size]
		got, err := w.f.ReadAt(w.win, off)
		w.win, w.winOff = w.win[:got], off
		if int64(got) < n {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return append([]byte(nil), w.win[off-w.winOff:][:n]...), nil
}

func (w *walker) freelist(id uint64) ([]uint64, error) {
	buf, err := w.page(id, "freelist")
	if err != nil {
		return nil, err
	}
	if fl := le.Uint16(buf[8:]); fl != freelistPageFlag {
		return nil, damaged(w.path, "freelist page %d has type %#x", id, fl)
	}
	n, at := uint64(le.Uint16(buf[10:])), uint64(pageHeaderSize)
	if n == 0xFFFF { // the count did not fit: the first id slot holds it
		if len(buf) < pageHeaderSize+8 {
			return nil, damaged(w.path, "freelist page %d is too short for its count", id)
		}
		n, at = le.Uint64(buf[pageHeaderSize:]), pageHeaderSize+8
	}
	if n > (uint64(len(buf))-at)/8 {
		return nil, damaged(w.path, "freelist page %d claims %d ids, more than it holds", id, n)
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = le.Uint64(buf[at+uint64(i)*8:])
		if ids[i] < 2 || ids[i] >= w.hwm {
			return nil, damaged(w.path, "freelist page %d lists page %d, outside 2..%d", id, ids[i], w.hwm-1)
		}
	}
	return ids, nil
}

// bucket walks the tree of a bucket whose root is page root, or, for an
// inline bucket (root 0), the page held in inline.
func (w *walker) bucket(root uint64, inline []byte, what string) error {
	type item struct {
		id   uint64
		what string
	}
	stack := []item{}
	visit := func(buf []byte, id uint64, what string, inlined bool) error {
		children, buckets, err := w.elements(buf, id, what, inlined)
		if err != nil {
			return err
		}
		// Pushed last to first, so that they are visited in key order:
		// file order, for an append-only log.
		for i := len(children) - 1; i >= 0; i-- {
			stack = append(stack, item{children[i], what})
		}
		for _, b := range buckets {
			if err := w.bucket(b.root, b.inline, fmt.Sprintf("bucket %q", b.name)); err != nil {
				return err
			}
		}
		return nil
	}
	if root == 0 {
		return visit(inline, 0, what+" (inline)", true)
	}
	stack = append(stack, item{root, what})
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		buf, err := w.page(it.id, it.what)
		if err != nil {
			return err
		}
		if err := visit(buf, it.id, it.what, false); err != nil {
			return err
		}
	}
	return nil
}

type subBucket struct {
	name   []byte
	root   uint64
	inline []byte
}

// elements checks a branch or leaf page held in buf: the element array and
// every key and value inside buf, keys strictly ascending. It returns the
// child pages of a branch and the sub-buckets of a leaf.
func (w *walker) elements(buf []byte, id uint64, what string, inlined bool) (children []uint64, buckets []subBucket, err error) {
	bad := func(format string, args ...any) error {
		return damaged(w.path, "%s: page %d: %s", what, id, fmt.Sprintf(format, args...))
	}
	if len(buf) < pageHeaderSize {
		return nil, nil, bad("%d bytes, shorter than a page header", len(buf))
	}
	flags, count := le.Uint16(buf[8:]), int(le.Uint16(buf[10:]))
	if flags != branchPageFlag && flags != leafPageFlag || inlined && flags != leafPageFlag {
		return nil, nil, bad("type %#x where a branch or leaf page belongs", flags)
	}
	if count > (len(buf)-pageHeaderSize)/elementSize {
		return nil, nil, bad("%d elements do not fit in %d bytes", count, len(buf))
	}
	if flags == branchPageFlag && count == 0 {
		return nil, nil, bad("branch page without elements")
	}
	var prev []byte
	for i := range count {
		at := pageHeaderSize + i*elementSize
		e := buf[at : at+elementSize]
		var pos, ksize, vsize uint64
		if flags == branchPageFlag {
			pos, ksize = uint64(le.Uint32(e)), uint64(le.Uint32(e[4:]))
		} else {
			pos, ksize, vsize = uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
		}
		start := uint64(at) + pos
		if start+ksize+vsize > uint64(len(buf)) {
			return nil, nil, bad("element %d's key and value run past the page", i)
		}
		key := buf[start : start+ksize]
		if i > 0 && bytes.Compare(prev, key) >= 0 {
			return nil, nil, bad("keys out of order at element %d", i)
		}
		prev = key
		if flags == branchPageFlag {
			children = append(children, le.Uint64(e[8:]))
			continue
		}
		if le.Uint32(e)&bucketLeafFlag == 0 {
			continue
		}
		v := buf[start+ksize : start+ksize+vsize]
		if len(v) < 16 {
			return nil, nil, bad("bucket %q has a %d-byte header, want 16", key, len(v))
		}
		b := subBucket{name: key, root: le.Uint64(v)}
		if b.root == 0 {
			b.inline = v[16:]
		}
		buckets = append(buckets, b)
	}
	return children, buckets, nil
}

// guard runs fn — a bbolt call — turning a panic into an ErrDamaged error:
// bbolt panics on an assertion about a damaged page, and a read of the
// mapped file after it shrank under the process faults, which
// SetPanicOnFault makes a panic on this goroutine instead of a crash.
func guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = damaged(path, "reading it failed: %v", r)
		}
	}()
	return fn()
}
