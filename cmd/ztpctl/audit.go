package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/audit"
)

// lockTimeout is how long --db waits for the file lock: a running proxy
// holds it for as long as it runs, so waiting longer only delays the error.
const lockTimeout = time.Second

func newAuditCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Export and verify the audit log; signed checkpoints",
		Long: `Read the audit log: through the running proxy's control API (needs membership
in a group of audit.readers), or offline from the bbolt file with --db (a stopped
proxy's file or a copy: a running proxy holds the file locked).`,
	}
	cmd.AddCommand(newAuditExportCommand(g), newAuditVerifyCommand(g), newAuditCheckpointCommand(g), newAuditKeygenCommand(g))
	return cmd
}

// callContext bounds a long read (export, verify) by --timeout only when
// the flag was given: a log of millions of records takes longer than a
// normal control call, and --follow runs until interrupted.
func (g *globalOptions) callContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if f := cmd.Flags().Lookup("timeout"); f != nil && f.Changed {
		return context.WithTimeout(ctx, g.timeout)
	}
	return context.WithCancel(ctx)
}

func openDB(path string) (*audit.Reader, error) {
	r, err := audit.OpenReader(path, lockTimeout)
	if errors.Is(err, audit.ErrLocked) {
		return nil, fmt.Errorf("--db %s is locked, most likely by the running ztp-proxy: read through the proxy instead (omit --db), or stop it first", path)
	}
	return r, err
}

type auditExportOptions struct {
	db, format   string
	since, until string
	filter       audit.Filter
	follow       bool
	now          func() time.Time
}

func newAuditExportCommand(g *globalOptions) *cobra.Command {
	o := &auditExportOptions{now: time.Now}
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Stream audit records as JSON lines or CSV",
		Long: `Stream audit records in seq order to standard output: JSON lines exactly as
stored and hashed (verifiable with "ztpctl audit verify" logic or the recipe in the
README), or CSV with a fixed column set for reading.

Filters combine with AND. --since and --until take RFC 3339 times, dates
(2026-11-26, UTC) or durations back from now (90m, 24h, 7d, 2w). --follow keeps
streaming new records as they are committed (through the proxy only), for a SIEM.
Progress goes to standard error when it is a terminal.`,
		Example: `  # everything from the last 24 hours, as JSON lines
  ztpctl audit export --since 24h > audit.jsonl

  # what alice did to etcd's KV service this week, as CSV
  ztpctl audit export --since 7d --principal spiffe://example.org/user/alice \
      --method '/etcdserverpb.KV/*' --format csv > alice.csv

  # everything done under a break-glass grant
  ztpctl audit export --grant bg-3f2a9c

  # tail the log into a SIEM
  ztpctl audit export --follow --from-seq 1 | vector --config siem.toml

  # offline, from a stopped proxy's file
  ztpctl audit export --db /var/lib/ztp/audit.db --decision deny`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd, g) },
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "read this audit file instead of the running proxy")
	enumFlag(f, &o.format, "format", "", "jsonl", []string{"jsonl", "csv"}, "record format")
	f.StringVar(&o.since, "since", "", "records at or after this time (RFC 3339, date, or 24h / 7d ago)")
	f.StringVar(&o.until, "until", "", "records before this time (same forms as --since)")
	f.StringVar(&o.filter.Principal, "principal", "", "principal id, exactly")
	f.StringVar(&o.filter.Method, "method", "", "method glob, e.g. '/etcdserverpb.KV/*' or '*/DeleteRange'")
	enumFlag(f, &o.filter.Decision, "decision", "", "", []string{audit.DecisionAllow, audit.DecisionDeny, audit.DecisionDryrunDeny, audit.DecisionRatelimited, audit.DecisionError}, "only records with this decision")
	f.StringVar(&o.filter.Grant, "grant", "", "break-glass grant id")
	f.Uint64Var(&o.filter.FromSeq, "from-seq", 0, "start at this seq")
	f.BoolVar(&o.follow, "follow", false, "keep streaming records as they are committed (control API only)")
	return cmd
}

func (o *auditExportOptions) run(cmd *cobra.Command, g *globalOptions) error {
	var err error
	now := o.now()
	if o.filter.Since, err = parseTimeFlag(o.since, now); err != nil {
		return usageError(fmt.Errorf("--since: %w", err))
	}
	if o.filter.Until, err = parseTimeFlag(o.until, now); err != nil {
		return usageError(fmt.Errorf("--until: %w", err))
	}
	if o.follow && o.db != "" {
		return usageError(errors.New("--follow needs the running proxy: nothing appends to a file opened with --db"))
	}
	if o.follow && !o.filter.Until.IsZero() {
		return usageError(errors.New("--follow and --until exclude each other"))
	}
	out := newRecordWriter(cmd.OutOrStdout(), o.format)
	prog := newProgress(cmd.ErrOrStderr())
	emit := func(line []byte) error {
		prog.add()
		return out.write(line)
	}
	if o.db != "" {
		err = o.exportFile(cmd, emit)
	} else {
		err = o.exportRemote(cmd, g, emit, out)
	}
	prog.done()
	if ferr := out.flush(); err == nil {
		err = ferr
	}
	return err
}

func (o *auditExportOptions) exportFile(cmd *cobra.Command, emit func([]byte) error) error {
	r, err := openDB(o.db)
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Export(cmd.Context(), o.filter, func(_ uint64, line []byte) error { return emit(line) })
}

func (o *auditExportOptions) exportRemote(cmd *cobra.Command, g *globalOptions, emit func([]byte) error, out *recordWriter) error {
	conn, err := g.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := g.callContext(cmd)
	defer cancel()
	req := &ztpv1.ExportRequest{
		Principal: o.filter.Principal,
		Method:    o.filter.Method,
		Decision:  o.filter.Decision,
		Grant:     o.filter.Grant,
		FromSeq:   o.filter.FromSeq,
		Follow:    o.follow,
	}
	if !o.filter.Since.IsZero() {
		req.Since = timestamppb.New(o.filter.Since)
	}
	if !o.filter.Until.IsZero() {
		req.Until = timestamppb.New(o.filter.Until)
	}
	stream, err := ztpv1.NewAuditClient(conn).Export(ctx, req)
	if err != nil {
		return rpcError("audit export", err)
	}
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return rpcError("audit export", err)
		}
		for _, line := range chunk.GetLines() {
			if err := emit(line); err != nil {
				return err
			}
		}
		// A follower reads whatever arrives as it arrives.
		if err := out.flush(); err != nil {
			return err
		}
	}
}

// parseTimeFlag reads an RFC 3339 time, a date (UTC midnight), or a
// duration back from now: Go durations (90m, 24h) or whole days and weeks
// (7d, 2w). Empty is the zero time.
func parseTimeFlag(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	var d time.Duration
	if n, unit := s[:len(s)-1], s[len(s)-1]; unit == 'd' || unit == 'w' {
		days, err := strconv.ParseUint(n, 10, 16)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is not a time (RFC 3339, 2006-01-02, or a duration like 24h, 7d)", s)
		}
		if unit == 'w' {
			days *= 7
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < 0 {
			return time.Time{}, fmt.Errorf("%q is not a time (RFC 3339, 2006-01-02, or a duration like 24h, 7d)", s)
		}
	}
	return now.Add(-d), nil
}

// recordWriter writes exported lines as JSON lines or CSV rows, buffered.
type recordWriter struct {
	buf    *bufio.Writer
	csv    *csv.Writer // nil: JSON lines
	header bool
}

func newRecordWriter(w io.Writer, format string) *recordWriter {
	rw := &recordWriter{buf: bufio.NewWriterSize(w, 256<<10)}
	if format == "csv" {
		rw.csv = csv.NewWriter(rw.buf)
	}
	return rw
}

func (w *recordWriter) write(line []byte) error {
	if w.csv == nil {
		if _, err := w.buf.Write(line); err != nil {
			return err
		}
		return w.buf.WriteByte('\n')
	}
	if !w.header {
		w.header = true
		if err := w.csv.Write(audit.CSVHeader()); err != nil {
			return err
		}
	}
	r, err := audit.ParseLine(line)
	if err != nil {
		return err
	}
	return w.csv.Write(audit.CSVRow(r))
}

func (w *recordWriter) flush() error {
	if w.csv != nil {
		if !w.header { // an empty export still names its columns
			w.header = true
			if err := w.csv.Write(audit.CSVHeader()); err != nil {
				return err
			}
		}
		w.csv.Flush()
		if err := w.csv.Error(); err != nil {
			return err
		}
	}
	return w.buf.Flush()
}

// progress reports a running count on standard error when it is a
// terminal, at most twice a second; never into a pipe or a file.
type progress struct {
	w     io.Writer // nil: silent
	n     uint64
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	if !ok {
		return &progress{}
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return &progress{}
	}
	now := time.Now()
	return &progress{w: w, start: now, last: now}
}

func (p *progress) add() {
	p.n++
	if p.w == nil || p.n%1024 != 0 {
		return
	}
	if now := time.Now(); now.Sub(p.last) >= 500*time.Millisecond {
		p.last = now
		fmt.Fprintf(p.w, "\rexported %d records (%.0f/s)", p.n, float64(p.n)/now.Sub(p.start).Seconds())
	}
}

func (p *progress) done() {
	if p.w != nil {
		fmt.Fprintf(p.w, "\rexported %d records in %s\n", p.n, time.Since(p.start).Round(time.Millisecond))
	}
}

type auditVerifyOptions struct {
	db, checkpoint, pubkey string
}

// faultMeaning explains a fault to a reader who has not read the package.
func faultMeaning(f audit.Fault) string {
	switch f {
	case audit.FaultMissing:
		return "records missing (deleted, or the tail truncated)"
	case audit.FaultMalformed:
		return "record edited (not a canonical record)"
	case audit.FaultHash:
		return "record edited (its bytes do not match its hash)"
	case audit.FaultOrder:
		return "records reordered"
	case audit.FaultLink:
		return "record replaced (it does not link to its predecessor)"
	case audit.FaultHead:
		return "the stored head does not match the last record"
	case audit.FaultCheckpoint:
		return "log rolled back and rewritten since the checkpoint"
	}
	return "damaged"
}

func newAuditVerifyCommand(g *globalOptions) *cobra.Command {
	o := &auditVerifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Verify the audit log's hash chain (and that it extends a checkpoint)",
		Long: `Walk the whole hash chain and print "ok: N records, head <hash>", or the first
bad seq and what is wrong with it (edited, missing, reordered, replaced), exiting
non-zero.

Without --checkpoint, ok means only that the log is internally consistent:
someone who can write the file can cut off its tail and fix the stored head, or
edit a record and recompute every later hash, and it still verifies.

With --checkpoint (a signed checkpoint kept off the host: the proxy writes each
one to audit.checkpoint_dir and/or audit.checkpoint_command) it also proves that
the log EXTENDS that checkpoint: record <size> still has the signed hash, which
detects both. The checkpoint's signature is checked here, with --pubkey (the
.pub file written by "ztpctl audit keygen", or the audit.signing_key PEM itself).

With --db the file's page structure is checked first: a truncated or
overwritten file is reported as FAIL, naming the damage, exit status 3.`,
		Example: `  ztpctl audit verify
  ztpctl audit verify --checkpoint /mnt/audit-ckpt/checkpoint-00000000000000001234-20261126T100000.000000000Z.txt \
      --pubkey audit-ed25519.pub
  ztpctl audit verify --db /var/lib/ztp/audit.db -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd, g) },
	}
	f := cmd.Flags()
	f.StringVar(&o.db, "db", "", "verify this audit file instead of the running proxy's log")
	f.StringVar(&o.checkpoint, "checkpoint", "", "signed checkpoint file the log must extend")
	f.StringVar(&o.pubkey, "pubkey", "", "public key (PEM) that signed the checkpoint")
	return cmd
}

type verifyReport struct {
	OK         bool               `json:"ok"`
	Records    uint64             `json:"records"`
	HeadSeq    uint64             `json:"head_seq"`
	HeadHash   string             `json:"head_hash"`
	Problem    *audit.VerifyError `json:"problem,omitempty"`
	Checkpoint *checkpointReport  `json:"checkpoint,omitempty"`
	BboltCheck string             `json:"bbolt_check,omitempty"` // --db only: "ok" or the damage
	// Unreadable: the file's page structure is too damaged to read the
	// chain at all (BboltCheck says how); Records is then 0.
	Unreadable bool `json:"unreadable,omitempty"`
	// Scope says what an ok proves: "internal_consistency" without a
	// checkpoint, "extends_checkpoint" with one.
	Scope string `json:"scope"`
}

type checkpointReport struct {
	Size  uint64    `json:"size"`
	Hash  string    `json:"hash"`
	Time  time.Time `json:"time"`
	KeyID string    `json:"key_id"`
}

func (o *auditVerifyOptions) run(cmd *cobra.Command, g *globalOptions) error {
	var cp *audit.Checkpoint
	var rep verifyReport
	if o.checkpoint != "" {
		c, pub, err := openCheckpointFile(o.checkpoint, o.pubkey)
		if err != nil {
			return err
		}
		cp = &c
		rep.Checkpoint = &checkpointReport{Size: c.Size, Hash: c.Hash, Time: c.Time, KeyID: audit.KeyID(pub)}
	} else if o.pubkey != "" {
		return usageError(errors.New("--pubkey checks a --checkpoint; give one"))
	}
	rep.Scope = "internal_consistency"
	if cp != nil {
		rep.Scope = "extends_checkpoint"
	}
	var err error
	if o.db != "" {
		err = o.verifyFile(cmd, cp, &rep)
	} else {
		err = o.verifyRemote(cmd, g, cp, &rep)
	}
	if err != nil {
		return err
	}
	rep.OK = rep.Problem == nil && (rep.BboltCheck == "" || rep.BboltCheck == "ok")
	if err := printVerify(cmd.OutOrStdout(), g.output, &rep); err != nil {
		return err
	}
	switch {
	case rep.Problem != nil:
		return integrityError(fmt.Errorf("audit verify: chain broken at seq %d: %s", rep.Problem.Seq, rep.Problem.Fault))
	case rep.Unreadable:
		return integrityError(errors.New("audit verify: the audit file is damaged; its chain could not be read"))
	case !rep.OK:
		return integrityError(errors.New("audit verify: bbolt consistency check failed"))
	}
	return nil
}

// openCheckpointFile reads a checkpoint and checks its signature.
func openCheckpointFile(path, pubkey string) (audit.Checkpoint, ed25519.PublicKey, error) {
	if pubkey == "" {
		return audit.Checkpoint{}, nil, usageError(errors.New("--checkpoint needs --pubkey: a checkpoint proves nothing until its signature is checked with the key that signed it"))
	}
	pemBytes, err := os.ReadFile(pubkey)
	if err != nil {
		return audit.Checkpoint{}, nil, fmt.Errorf("--pubkey: %w", err)
	}
	pub, err := audit.ParsePublicKey(pemBytes)
	if err != nil {
		return audit.Checkpoint{}, nil, fmt.Errorf("--pubkey %s: %w", pubkey, err)
	}
	signed, err := os.ReadFile(path)
	if err != nil {
		return audit.Checkpoint{}, nil, fmt.Errorf("--checkpoint: %w", err)
	}
	c, err := audit.OpenCheckpoint(signed, pub)
	if err != nil {
		return audit.Checkpoint{}, nil, fmt.Errorf("--checkpoint %s: %w", path, err)
	}
	return c, pub, nil
}

func (o *auditVerifyOptions) verifyFile(cmd *cobra.Command, cp *audit.Checkpoint, rep *verifyReport) error {
	r, err := openDB(o.db)
	if errors.Is(err, audit.ErrDamaged) {
		// A verdict, not an error: the file is damaged where bbolt would
		// read it, so its chain cannot be read at all.
		rep.BboltCheck = err.Error()
		rep.Unreadable = true
		return nil
	}
	if err != nil {
		return err
	}
	defer r.Close()
	rep.BboltCheck = "ok"
	if err := r.Check(); err != nil {
		rep.BboltCheck = err.Error()
	}
	var res audit.VerifyResult
	if cp != nil {
		res, err = r.VerifyExtends(cmd.Context(), *cp)
	} else {
		res, err = r.Verify(cmd.Context())
	}
	if verr := (*audit.VerifyError)(nil); err != nil && !errors.As(err, &verr) {
		return err
	}
	rep.Records, rep.HeadSeq, rep.HeadHash, rep.Problem = res.Records, res.HeadSeq, res.HeadHash, res.Problem
	return nil
}

func (o *auditVerifyOptions) verifyRemote(cmd *cobra.Command, g *globalOptions, cp *audit.Checkpoint, rep *verifyReport) error {
	conn, err := g.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := g.callContext(cmd)
	defer cancel()
	req := &ztpv1.VerifyRequest{}
	if cp != nil {
		req.Checkpoint = cp.Signed
	}
	resp, err := ztpv1.NewAuditClient(conn).Verify(ctx, req)
	if err != nil {
		return rpcError("audit verify", err)
	}
	if cp != nil && !resp.GetCheckpointChecked() {
		return errors.New("audit verify: the proxy did not check the checkpoint")
	}
	rep.Records, rep.HeadSeq, rep.HeadHash = resp.GetRecords(), resp.GetHeadSeq(), resp.GetHeadHash()
	if !resp.GetOk() {
		rep.Problem = &audit.VerifyError{Seq: resp.GetBadSeq(), Fault: audit.Fault(resp.GetFault()), Detail: resp.GetDetail()}
	}
	return nil
}

func printVerify(w io.Writer, output string, rep *verifyReport) error {
	if output == "json" {
		return printJSON(w, rep)
	}
	if rep.Unreadable {
		fmt.Fprintf(w, "FAIL: %s\n  the chain was not checked: the file cannot be read safely (truncated or overwritten); verify a backup or an export\n", rep.BboltCheck)
		return nil
	}
	if p := rep.Problem; p != nil {
		fmt.Fprintf(w, "FAIL: seq %d: %s: %s\n  %s\n", p.Seq, p.Fault, faultMeaning(p.Fault), p.Detail)
		fmt.Fprintf(w, "  %d records verified before it (head %s)\n", rep.Records, rep.HeadHash)
	} else {
		fmt.Fprintf(w, "ok: %d records, head %s\n", rep.Records, rep.HeadHash)
		if c := rep.Checkpoint; c != nil {
			fmt.Fprintf(w, "ok: extends checkpoint of %d records (hash %s, signed %s by key %s)\n", c.Size, c.Hash, c.Time.Format(time.RFC3339), c.KeyID)
		} else {
			fmt.Fprint(w, noCheckpointNote)
		}
	}
	if rep.BboltCheck != "" && rep.BboltCheck != "ok" {
		fmt.Fprintf(w, "FAIL: bbolt consistency check: %s\n", rep.BboltCheck)
	}
	return nil
}

// noCheckpointNote is what an ok without --checkpoint does not prove.
const noCheckpointNote = `note: without --checkpoint this proves only that the log is internally consistent.
  Someone who can write the file can cut off its tail and fix the stored head, or edit
  a record and recompute every later hash, and it still verifies. Only a signed
  checkpoint kept off the host detects that: --checkpoint FILE --pubkey KEY.
`

type auditCheckpointOptions struct {
	db, pubkey string
}

func newAuditCheckpointCommand(g *globalOptions) *cobra.Command {
	o := &auditCheckpointOptions{}
	cmd := &cobra.Command{
		Use:   "checkpoint",
		Short: "Print the latest signed checkpoint of the audit log",
		Long: `Print a signed checkpoint of the chain head (size, hash, time, Ed25519 signature).
Through the proxy the head is signed afresh when it moved since the last checkpoint;
with --db the latest stored checkpoint is printed.

Checkpoints must leave the host (another machine, object storage with retention, a
ticket): the proxy ships each one itself to audit.checkpoint_dir and/or
audit.checkpoint_command. This command fetches one by hand, e.g. for a ticket.
Later, "ztpctl audit verify --checkpoint FILE --pubkey KEY" proves the log still
extends it. With --pubkey the signature is checked before printing.`,
		Example: `  # attach a fresh checkpoint to a change ticket
  ztpctl audit checkpoint --pubkey /etc/ztp/audit-ed25519.pub > ckpt-INC-4711.txt

  ztpctl audit checkpoint -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd, g) },
	}
	cmd.Flags().StringVar(&o.db, "db", "", "read the latest checkpoint stored in this audit file")
	cmd.Flags().StringVar(&o.pubkey, "pubkey", "", "check the signature with this public key (PEM) before printing")
	return cmd
}

func (o *auditCheckpointOptions) run(cmd *cobra.Command, g *globalOptions) error {
	var signed []byte
	if o.db != "" {
		r, err := openDB(o.db)
		if err != nil {
			return err
		}
		c, err := r.LatestCheckpoint()
		r.Close()
		if errors.Is(err, audit.ErrNoCheckpoint) {
			return fmt.Errorf("%s holds no checkpoint (is audit.signing_key configured?)", o.db)
		}
		if err != nil {
			return err
		}
		signed = c.Signed
	} else {
		resp, err := callProxy(cmd, g, "audit checkpoint", func(ctx context.Context, conn *grpc.ClientConn) (*ztpv1.Checkpoint, error) {
			return ztpv1.NewAuditClient(conn).LatestCheckpoint(ctx, &ztpv1.LatestCheckpointRequest{})
		})
		if err != nil {
			return err
		}
		signed = resp.GetSigned()
	}
	c, err := audit.ParseCheckpoint(signed)
	if err != nil {
		return err
	}
	keyID := ""
	if o.pubkey != "" {
		pemBytes, err := os.ReadFile(o.pubkey)
		if err != nil {
			return fmt.Errorf("--pubkey: %w", err)
		}
		pub, err := audit.ParsePublicKey(pemBytes)
		if err != nil {
			return fmt.Errorf("--pubkey %s: %w", o.pubkey, err)
		}
		if _, err := audit.OpenCheckpoint(signed, pub); err != nil {
			return err
		}
		keyID = audit.KeyID(pub)
	}
	if g.output == "json" {
		return printJSON(cmd.OutOrStdout(), map[string]any{
			"size": c.Size, "hash": c.Hash, "time": c.Time, "signed": string(signed), "verified_key_id": keyID,
		})
	}
	_, err = cmd.OutOrStdout().Write(signed)
	return err
}

type auditKeygenOptions struct {
	out   string
	force bool
}

func newAuditKeygenCommand(g *globalOptions) *cobra.Command {
	o := &auditKeygenOptions{}
	cmd := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Create the Ed25519 key pair that signs audit checkpoints",
		Long: `Write a new Ed25519 private key (PEM PKCS#8, mode 0600) to --out, for
audit.signing_key, and its public key (PEM) next to it with the extension .pub,
for auditors ("ztpctl audit verify --pubkey"). Existing files are not overwritten
unless --force. The private key stays on the proxy host; the public key and the
checkpoints go elsewhere.`,
		Example: `  ztpctl audit keygen --out keys/audit-ed25519.pem
  # then in ztp.yaml:
  #   audit:
  #     signing_key: keys/audit-ed25519.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd, g) },
	}
	cmd.Flags().StringVar(&o.out, "out", "", "private key file to write (required); the public key goes to the same name with .pub")
	cmd.Flags().BoolVar(&o.force, "force", false, "overwrite existing key files")
	return cmd
}

func pubKeyPath(priv string) string { return strings.TrimSuffix(priv, ".pem") + ".pub" }

func (o *auditKeygenOptions) run(cmd *cobra.Command, g *globalOptions) error {
	if o.out == "" {
		return usageError(errors.New("--out is required"))
	}
	privPEM, pubPEM, err := audit.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	pubPath := pubKeyPath(o.out)
	if !o.force {
		for _, p := range []string{o.out, pubPath} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s exists; not replacing a key that may have signed checkpoints (use --force)", p)
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o700); err != nil {
		return err
	}
	if err := writeNew(o.out, privPEM, 0o600, o.force); err != nil {
		return err
	}
	if err := writeNew(pubPath, pubPEM, 0o644, o.force); err != nil {
		return err
	}
	pub, err := audit.ParsePublicKey(pubPEM)
	if err != nil {
		return err
	}
	if g.output == "json" {
		return printJSON(cmd.OutOrStdout(), map[string]string{
			"private_key": o.out, "public_key": pubPath, "key_id": audit.KeyID(pub), "verifier_key": audit.VerifierKey(pub),
		})
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "private key:  %s (mode 0600; set audit.signing_key to it)\n", o.out)
	fmt.Fprintf(w, "public key:   %s (for auditors: ztpctl audit verify --pubkey)\n", pubPath)
	fmt.Fprintf(w, "verifier key: %s\n", audit.VerifierKey(pub))
	return nil
}

// writeNew writes a file that must not exist yet (unless force), so that a
// second keygen cannot silently replace the key that signed earlier
// checkpoints.
func writeNew(path string, data []byte, mode os.FileMode, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, mode)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists; not replacing a key that may have signed checkpoints (use --force)", path)
	}
	if err != nil {
		return err
	}
	if force {
		if err := f.Chmod(mode); err != nil {
			f.Close()
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
