package handler

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func job(payload string) Job {
	return Job{ID: "job-1", Queue: "q", Attempt: 2, Payload: []byte(payload)}
}

func sh(script string) *Exec {
	return &Exec{Command: []string{"/bin/sh", "-c", script}, Timeout: 10 * time.Second, MaxOutput: 1 << 20}
}

func TestExecResult(t *testing.T) {
	out, err := sh(`tr a-z A-Z; printf ' %s %s %s' "$BUNNY_JOB_ID" "$BUNNY_QUEUE" "$BUNNY_ATTEMPT"`).Run(context.Background(), job("hello"))
	if err != nil || string(out) != "HELLO job-1 q 2" {
		t.Fatalf("out %q, err %v", out, err)
	}
	// A command that does not read its stdin still succeeds.
	out, err = sh(`echo ok`).Run(context.Background(), job(strings.Repeat("x", 1<<20)))
	if err != nil || string(out) != "ok\n" {
		t.Fatalf("out %q, err %v", out, err)
	}
}

func TestExecFailureCarriesStderrTail(t *testing.T) {
	_, err := sh(`head -c 5000 /dev/zero | tr '\0' a >&2; echo "the real reason" >&2; exit 3`).Run(context.Background(), job(""))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "exit status 3") || !strings.Contains(msg, "the real reason") {
		t.Fatalf("error %q lacks the status or stderr's tail", msg)
	}
	if len(msg) > StderrTail+200 {
		t.Fatalf("error is %d bytes; the tail should be bounded", len(msg))
	}
	if _, err := (&Exec{Command: []string{filepath.Join(t.TempDir(), "missing")}, Timeout: time.Second, MaxOutput: 10}).Run(context.Background(), job("")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing program: %v", err)
	}
}

// alive reports whether pid exists (and is not a zombie we could reap).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return runtime.GOOS != "linux"
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	pid, err := readPidErr(path)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func readPidErr(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// A hanging command is killed at its timeout, and so is the child it
// started (the whole process group).
func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no process groups")
	}
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	e := sh(`sleep 60 & echo $! > ` + pidFile + `; wait`)
	e.Timeout = 300 * time.Millisecond
	start := time.Now()
	_, err := e.Run(context.Background(), job(""))
	took := time.Since(start)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "process group killed") {
		t.Fatalf("err %v", err)
	}
	if took > 3*time.Second {
		t.Fatalf("took %s to stop a 300ms timeout", took)
	}
	child := readPid(t, pidFile)
	deadline := time.Now().Add(2 * time.Second)
	for alive(child) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d of the timed-out command is still running", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExecCancel(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	why := errors.New("lease lost")
	time.AfterFunc(200*time.Millisecond, func() { cancel(why) })
	_, err := sh(`sleep 60`).Run(ctx, job(""))
	if err == nil || errors.Is(err, ErrTimeout) || !errors.Is(err, why) {
		t.Fatalf("err %v", err)
	}
}

func TestExecOutputCap(t *testing.T) {
	e := sh(`yes`)
	e.MaxOutput = 4096
	start := time.Now()
	_, err := e.Run(context.Background(), job(""))
	if !errors.Is(err, ErrOutputTooLarge) || time.Since(start) > 5*time.Second {
		t.Fatalf("err %v after %s", err, time.Since(start))
	}
	e = sh(`head -c 4096 /dev/zero`)
	e.MaxOutput = 4096
	if out, err := e.Run(context.Background(), job("")); err != nil || len(out) != 4096 {
		t.Fatalf("exactly the cap: %d bytes, %v", len(out), err)
	}
}

func TestHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch string(body) {
		case "fail":
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = io.WriteString(w, "bad input: "+strings.Repeat("x", 5000))
		case "hang":
			<-r.Context().Done()
		case "big":
			_, _ = w.Write(make([]byte, 2000))
		case "redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		default:
			if r.Method != http.MethodPost || r.Header.Get("Bunny-Job-Id") != "job-1" || r.Header.Get("Bunny-Attempt") != "2" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			_, _ = io.WriteString(w, strings.ToUpper(string(body)))
		}
	}))
	defer srv.Close()
	h := &HTTP{URL: srv.URL + "/run", Timeout: 5 * time.Second, MaxOutput: 1000}
	ctx := context.Background()
	if out, err := h.Run(ctx, job("hello")); err != nil || string(out) != "HELLO" {
		t.Fatalf("out %q, err %v", out, err)
	}
	_, err := h.Run(ctx, job("fail"))
	if err == nil || !strings.Contains(err.Error(), "422 Unprocessable Entity") || !strings.Contains(err.Error(), "bad input: xxx") || len(err.Error()) > BodyHead+200 {
		t.Fatalf("non-2xx: %v", err)
	}
	if _, err := h.Run(ctx, job("big")); !errors.Is(err, ErrOutputTooLarge) {
		t.Fatalf("big: %v", err)
	}
	if _, err := h.Run(ctx, job("redirect")); err == nil || !strings.Contains(err.Error(), "302") {
		t.Fatalf("redirect: %v", err)
	}
	h.Timeout = 200 * time.Millisecond
	if _, err := h.Run(ctx, job("hang")); !errors.Is(err, ErrTimeout) {
		t.Fatalf("hang: %v", err)
	}
	srv.Close()
	if _, err := h.Run(ctx, job("hello")); err == nil || !strings.Contains(err.Error(), "POST "+srv.URL) {
		t.Fatalf("server gone: %v", err)
	}
}
