package testenv

import (
	"bytes"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// testMessage is a small RFC 5322 message with the given subject.
func testMessage(subject string) []byte {
	return []byte("From: mailer-daemon@example.net\r\n" +
		"To: bounces@example.net\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: Wed, 25 Nov 2026 10:00:00 +0000\r\n" +
		"Message-ID: <" + subject + "@example.net>\r\n" +
		"\r\n" +
		"Delivery to the following recipient failed permanently.\r\n")
}

func appendMessage(t *testing.T, c *imapclient.Client, folder string, msg []byte) *imap.AppendData {
	t.Helper()
	cmd := c.Append(folder, int64(len(msg)), nil)
	if _, err := cmd.Write(msg); err != nil {
		t.Fatalf("APPEND to %s: write: %v", folder, err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatalf("APPEND to %s: close: %v", folder, err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatalf("APPEND to %s: %v", folder, err)
	}
	return data
}

func numMessages(t *testing.T, c *imapclient.Client, folder string) uint32 {
	t.Helper()
	st, err := c.Status(folder, &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		t.Fatalf("STATUS %s: %v", folder, err)
	}
	return *st.NumMessages
}

// TestIMAPDovecot checks what the mailbox ingestor relies on in the test
// Dovecot: login, IDLE and MOVE advertised, CREATE, APPEND (with UIDPLUS's
// APPENDUID) and MOVE by UID, the message arriving intact.
func TestIMAPDovecot(t *testing.T) {
	server, folder := IMAPFolder(t)
	c := server.Dial(t, nil)

	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatalf("CAPABILITY: %v", err)
	}
	for _, want := range []imap.Cap{imap.CapIdle, imap.CapMove, imap.CapUIDPlus} {
		if !caps.Has(want) {
			t.Errorf("CAPABILITY lacks %s: %v", want, caps)
		}
	}

	processed := folder + "_processed"
	for _, f := range []string{folder, processed} {
		if err := c.Create(f, nil).Wait(); err != nil {
			t.Fatalf("CREATE %s: %v", f, err)
		}
	}

	msg := testMessage(folder)
	appended := appendMessage(t, c, folder, msg)
	if appended.UID == 0 || appended.UIDValidity == 0 {
		t.Errorf("APPEND: UID %d, UIDVALIDITY %d; want both set (APPENDUID)", appended.UID, appended.UIDValidity)
	}

	sel, err := c.Select(folder, nil).Wait()
	if err != nil {
		t.Fatalf("SELECT %s: %v", folder, err)
	}
	if sel.NumMessages != 1 || sel.UIDValidity != appended.UIDValidity {
		t.Errorf("SELECT %s: %d messages, UIDVALIDITY %d; want 1, %d",
			folder, sel.NumMessages, sel.UIDValidity, appended.UIDValidity)
	}

	moved, err := c.Move(imap.UIDSetNum(appended.UID), processed).Wait()
	if err != nil {
		t.Fatalf("UID MOVE %d to %s: %v", appended.UID, processed, err)
	}
	if moved.DestUIDs == nil {
		t.Fatalf("UID MOVE: no COPYUID (destination UIDs)")
	}
	destUIDs, ok := moved.DestUIDs.(imap.UIDSet)
	if !ok {
		t.Fatalf("UID MOVE: destination %v is not a UID set", moved.DestUIDs)
	}
	dest, ok := destUIDs.Nums()
	if !ok || len(dest) != 1 {
		t.Fatalf("UID MOVE: destination UIDs %v, want one", destUIDs)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatalf("UNSELECT: %v", err)
	}
	if n := numMessages(t, c, folder); n != 0 {
		t.Errorf("%s after MOVE: %d messages, want 0", folder, n)
	}
	if n := numMessages(t, c, processed); n != 1 {
		t.Errorf("%s after MOVE: %d messages, want 1", processed, n)
	}

	if _, err := c.Select(processed, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatalf("EXAMINE %s: %v", processed, err)
	}
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.UIDSetNum(dest[0]), &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{section},
	}).Collect()
	if err != nil {
		t.Fatalf("UID FETCH %d in %s: %v", dest[0], processed, err)
	}
	if len(msgs) != 1 {
		t.Fatalf("UID FETCH %d in %s: %d messages, want 1", dest[0], processed, len(msgs))
	}
	if got := msgs[0].FindBodySection(section); !bytes.Equal(got, msg) {
		t.Errorf("moved message = %q, want %q", got, msg)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Errorf("LOGOUT: %v", err)
	}
}

// TestIMAPDovecotIdle checks that a connection in IDLE (RFC 2177) hears of a
// message another connection APPENDs to its folder.
func TestIMAPDovecotIdle(t *testing.T) {
	server, folder := IMAPFolder(t)

	exists := make(chan uint32, 16)
	watcher := server.Dial(t, &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(data *imapclient.UnilateralDataMailbox) {
				if data.NumMessages != nil {
					exists <- *data.NumMessages
				}
			},
		},
	})
	if err := watcher.Create(folder, nil).Wait(); err != nil {
		t.Fatalf("CREATE %s: %v", folder, err)
	}
	if _, err := watcher.Select(folder, nil).Wait(); err != nil {
		t.Fatalf("SELECT %s: %v", folder, err)
	}
	idle, err := watcher.Idle()
	if err != nil {
		t.Fatalf("IDLE: %v", err)
	}

	writer := server.Dial(t, nil)
	start := time.Now()
	appendMessage(t, writer, folder, testMessage(folder))

	const bound = 15 * time.Second // Dovecot notifies in about 0.5 s (inotify)
	select {
	case n := <-exists:
		if n != 1 {
			t.Errorf("IDLE: EXISTS %d, want 1", n)
		}
		t.Logf("IDLE reported the APPEND after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(bound):
		t.Errorf("IDLE: no EXISTS within %v of another connection's APPEND", bound)
	}
	if err := idle.Close(); err != nil {
		t.Fatalf("IDLE: DONE: %v", err)
	}
	if err := idle.Wait(); err != nil {
		t.Errorf("IDLE: %v", err)
	}
	if err := watcher.Logout().Wait(); err != nil {
		t.Errorf("LOGOUT: %v", err)
	}
}

// TestIMAPFolderCleanup checks that a test's folders are gone after it.
func TestIMAPFolderCleanup(t *testing.T) {
	server := IMAP(t)
	var folder string
	t.Run("make", func(t *testing.T) {
		_, folder = IMAPFolder(t)
		c := server.Dial(t, nil)
		for _, f := range []string{folder, folder + "_a", folder + "_b"} {
			if err := c.Create(f, nil).Wait(); err != nil {
				t.Fatalf("CREATE %s: %v", f, err)
			}
		}
	})
	c := server.Dial(t, nil)
	list, err := c.List("", folder+"*", nil).Collect()
	if err != nil {
		t.Fatalf("LIST: %v", err)
	}
	for _, m := range list {
		t.Errorf("folder %s left after its test", m.Mailbox)
	}
}
