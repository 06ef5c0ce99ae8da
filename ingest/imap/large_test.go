package imap

import (
	"bytes"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"

	"repute/internal/testenv"
)

// TestDovecotFiftyMegabytes: a real 50 MB message (a bounce with a large
// attachment) under the default size cap of 25 MiB is quarantined by its
// RFC822.SIZE, unread, intact, while a bounce beside it is processed.
func TestDovecotFiftyMegabytes(t *testing.T) {
	server, folder := testenv.IMAPFolder(t)
	c := server.Dial(t, nil)
	if err := c.Create(folder, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	o := dovecotOptions(t, server, folder)
	msgs := loadCorpusMsgs(t)
	big := append(crlf(msgs.bounce), bytes.Repeat([]byte("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"), 50<<20/78)...)
	appendMsg(t, c, folder, big)
	appendMsg(t, c, folder, crlf(msgs.complaint))

	rec := newRecorder()
	r, err := New(o, newProcessor(t), rec, rec, &MemoryLeases{})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, r)
	waitFor(t, "both messages filed", 60*time.Second, func() bool {
		return countOr0(c, folder) == 0 && countOr0(c, o.Quarantine) == 1 && countOr0(c, o.Processed) == 1
	})
	stop()
	if len(rec.snapshot()) == 0 {
		t.Error("the complaint beside the large message gave no event")
	}
	sel, err := c.Select(o.Quarantine, &imapv2.SelectOptions{ReadOnly: true}).Wait()
	if err != nil || sel.NumMessages != 1 {
		t.Fatalf("quarantine: %v, %+v", err, sel)
	}
	var all imapv2.SeqSet
	all.AddRange(1, 0)
	got, err := c.Fetch(all, &imapv2.FetchOptions{RFC822Size: true}).Collect()
	if err != nil || len(got) != 1 {
		t.Fatalf("fetch: %v", err)
	}
	if got[0].RFC822Size != int64(len(big)) {
		t.Errorf("quarantined message is %d bytes, appended %d", got[0].RFC822Size, len(big))
	}
}
