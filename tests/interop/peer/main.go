// Command kcppeer is kcpsock's interop and benchmark peer: a small program
// built against the real kcp-go (Debian's golang-github-xtaci-kcp-dev), so
// that kcpsock can be checked byte for byte against it.
//
// Modes:
//
//	echo-server  accept sessions, echo every byte back (with -bytes: print
//	             "ECHO bytes=N lost= fast= repeat= sent=" once a session
//	             has echoed that many)
//	sink-server  accept sessions; each reads an 8-byte big-endian length N,
//	             then N bytes, then answers "DONE" (one-way benchmark)
//	reply-close-server  accept sessions; each reads one request, writes
//	             -bytes of the test pattern (-seed), waits 300 ms for the
//	             ACKs (kcp-go's Close drops what is unacknowledged) and
//	             closes: a server whose reply ends with the conversation
//	echo-client  dial, send -bytes of the test pattern while reading the echo
//	             concurrently, verify every byte
//	send         dial, send an 8-byte length then -bytes, wait for "DONE"
//	ping         dial, -rounds round trips of -size bytes, print p50/p99
//
// Servers print "READY <host:port>" once listening and exit when stdin
// closes (so a killed test never leaves one behind) or after -timeout.
// Clients print one "OK key=value ..." line and exit 0, or print "FAIL ..."
// and exit 1.
//
// The test pattern is the concatenation of SHA-256("<seed>:<k>") for
// k = 0, 1, ..., cut to patternPeriod bytes and repeated; kcpsock's tests
// generate the same bytes.
package main

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
	"golang.org/x/crypto/pbkdf2"
)

const patternPeriod = 1000003

var (
	mode       = flag.String("mode", "echo-server", "echo-server, sink-server, reply-close-server, echo-client, send or ping")
	listenAddr = flag.String("listen", "127.0.0.1:0", "server: address to listen on")
	connect    = flag.String("connect", "", "client: address to dial")
	crypt      = flag.String("crypt", "null", "cipher as kcptun names it (aes, aes-128, ..., none), or null for no crypto layer")
	key        = flag.String("key", "it's a secrect", "password; key = pbkdf2-sha1(password, \"kcp-go\", 4096, 32) as kcptun")
	ds         = flag.Int("ds", 0, "FEC data shards")
	ps         = flag.Int("ps", 0, "FEC parity shards")
	stream     = flag.Bool("stream", false, "stream mode")
	nodelay    = flag.Int("nodelay", 1, "kcp nodelay")
	interval   = flag.Int("interval", 10, "kcp interval (ms)")
	resend     = flag.Int("resend", 2, "kcp fast resend")
	nc         = flag.Int("nc", 1, "kcp no congestion control")
	sndwnd     = flag.Int("sndwnd", 1024, "send window (segments)")
	rcvwnd     = flag.Int("rcvwnd", 1024, "receive window (segments)")
	mtu        = flag.Int("mtu", 1400, "MTU (UDP payload bytes)")
	ackNoDelay = flag.Bool("acknodelay", false, "flush ACKs right after input")
	nbytes     = flag.Int64("bytes", 256*1024, "client: bytes to move")
	chunk      = flag.Int("chunk", 32*1024, "client: bytes per Write")
	seed       = flag.Int("seed", 1, "client: pattern seed")
	rounds     = flag.Int("rounds", 1000, "ping: round trips")
	size       = flag.Int("size", 64, "ping: message size")
	sockbuf    = flag.Int("sockbuf", 4*1024*1024, "socket buffer sizes (bytes)")
	sessions   = flag.Int("sessions", 1, "send: sessions sending at once (bytes split evenly)")
	srttEvery  = flag.Int("srtt", 0, "send, echo-client: sample the smoothed RTT every N ms (0: no)")
	timeout    = flag.Duration("timeout", 60*time.Second, "give up after this long")
)

func blockCrypt(name, password string) (kcp.BlockCrypt, error) {
	pass := pbkdf2.Key([]byte(password), []byte("kcp-go"), 4096, 32, sha1.New)
	switch name {
	case "null", "":
		return nil, nil
	case "none":
		return kcp.NewNoneBlockCrypt(pass)
	case "aes":
		return kcp.NewAESBlockCrypt(pass)
	case "aes-128":
		return kcp.NewAESBlockCrypt(pass[:16])
	case "aes-192":
		return kcp.NewAESBlockCrypt(pass[:24])
	case "salsa20":
		return kcp.NewSalsa20BlockCrypt(pass)
	case "blowfish":
		return kcp.NewBlowfishBlockCrypt(pass)
	case "twofish":
		return kcp.NewTwofishBlockCrypt(pass)
	case "cast5":
		return kcp.NewCast5BlockCrypt(pass[:16])
	case "3des":
		return kcp.NewTripleDESBlockCrypt(pass[:24])
	case "tea":
		return kcp.NewTEABlockCrypt(pass[:16])
	case "xtea":
		return kcp.NewXTEABlockCrypt(pass[:16])
	case "xor":
		return kcp.NewSimpleXORBlockCrypt(pass)
	case "sm4":
		return kcp.NewSM4BlockCrypt(pass[:16])
	}
	return nil, fmt.Errorf("unknown cipher %q", name)
}

func configure(s *kcp.UDPSession) {
	s.SetStreamMode(*stream)
	s.SetNoDelay(*nodelay, *interval, *resend, *nc)
	s.SetWindowSize(*sndwnd, *rcvwnd)
	s.SetMtu(*mtu)
	s.SetACKNoDelay(*ackNoDelay)
	s.SetWriteDelay(false)
	_ = s.SetReadBuffer(*sockbuf)
	_ = s.SetWriteBuffer(*sockbuf)
}

// pattern returns the first n bytes of the test stream (n <= patternPeriod
// gives the exact prefix; longer streams repeat the period).
func pattern(seedv int, n int64) []byte {
	m := n
	if m > patternPeriod {
		m = patternPeriod
	}
	out := make([]byte, 0, m+32)
	for k := 0; int64(len(out)) < m; k++ {
		h := sha256.Sum256([]byte(strconv.Itoa(seedv) + ":" + strconv.Itoa(k)))
		out = append(out, h[:]...)
	}
	return out[:m]
}

// fill copies the stream bytes [off, off+len(dst)) into dst.
func fill(dst, period []byte, off int64) {
	p := int64(len(period))
	for len(dst) > 0 {
		i := off % p
		n := copy(dst, period[i:])
		dst = dst[n:]
		off += int64(n)
	}
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

// bytesSet: -bytes was given (an echo server then reports its counters once
// it has echoed that many bytes)
var bytesSet bool

func main() {
	flag.Parse()
	flag.Visit(func(f *flag.Flag) { bytesSet = bytesSet || f.Name == "bytes" })
	block, err := blockCrypt(*crypt, *key)
	if err != nil {
		fail("%v", err)
	}
	time.AfterFunc(*timeout, func() { fail("timeout after %v", *timeout) })
	switch *mode {
	case "echo-server", "sink-server", "reply-close-server":
		serve(block)
	case "echo-client":
		echoClient(block)
	case "send":
		sendClient(block)
	case "ping":
		pingClient(block)
	default:
		fail("unknown mode %q", *mode)
	}
}

func serve(block kcp.BlockCrypt) {
	l, err := kcp.ListenWithOptions(*listenAddr, block, *ds, *ps)
	if err != nil {
		fail("listen: %v", err)
	}
	_ = l.SetReadBuffer(*sockbuf)
	_ = l.SetWriteBuffer(*sockbuf)
	go func() {
		// Exit with our parent: stdin reaches EOF when the test closes it.
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fmt.Printf("READY %s\n", l.Addr().String())
	for {
		s, err := l.AcceptKCP()
		if err != nil {
			fail("accept: %v", err)
		}
		configure(s)
		switch *mode {
		case "echo-server":
			go echo(s)
		case "reply-close-server":
			go replyClose(s)
		default:
			go sink(s)
		}
	}
}

func echo(s *kcp.UDPSession) {
	buf := make([]byte, 65536)
	echoed := int64(0)
	for {
		n, err := s.Read(buf)
		if err != nil {
			return
		}
		if _, err := s.Write(buf[:n]); err != nil {
			return
		}
		// once -bytes were echoed: this process's resend counters (the
		// benchmark's echo runs: the client's resends received twice here)
		if bytesSet && echoed < *nbytes && echoed+int64(n) >= *nbytes {
			fmt.Printf("ECHO bytes=%d%s\n", echoed+int64(n), resendFigures())
		}
		echoed += int64(n)
	}
}

func replyClose(s *kcp.UDPSession) {
	buf := make([]byte, 65536)
	if _, err := s.Read(buf); err != nil {
		return
	}
	if _, err := s.Write(pattern(*seed, *nbytes)); err != nil {
		return
	}
	time.Sleep(300 * time.Millisecond)
	s.Close()
}

func sink(s *kcp.UDPSession) {
	buf := make([]byte, 65536)
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(s, hdr[:]); err != nil {
			return
		}
		want := int64(binary.BigEndian.Uint64(hdr[:]))
		start, cpu0 := time.Now(), cpuSeconds()
		for got := int64(0); got < want; {
			n := int64(len(buf))
			if want-got < n {
				n = want - got
			}
			m, err := s.Read(buf[:n])
			if err != nil {
				return
			}
			got += int64(m)
		}
		if _, err := s.Write([]byte("DONE")); err != nil {
			return
		}
		fmt.Printf("SINK bytes=%d seconds=%.6f cpu=%.6f%s\n", want, time.Since(start).Seconds(), cpuSeconds()-cpu0, resendFigures())
	}
}

// resendFigures: this process's KCP resend counters so far, as " key=value"
// fields (the benchmark's stability table: RTO resends, fast resends, segments
// received twice, segments sent)
func resendFigures() string {
	sn := kcp.DefaultSnmp.Copy()
	return fmt.Sprintf(" lost=%d fast=%d repeat=%d sent=%d",
		sn.LostSegs, sn.FastRetransSegs, sn.RepeatSegs, sn.OutSegs)
}

// srttSampler: with -srtt, samples s.GetSRTT() until stop is closed; the
// returned function prints " srtt_mean=.. srtt_max=.." (ms), or "" without -srtt
func srttSampler(s *kcp.UDPSession) (stop func() string) {
	if *srttEvery <= 0 {
		return func() string { return "" }
	}
	done := make(chan struct{})
	var n, sum, most int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Duration(*srttEvery) * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				v := int64(s.GetSRTT())
				n, sum = n+1, sum+v
				if v > most {
					most = v
				}
			}
		}
	}()
	return func() string {
		close(done)
		wg.Wait()
		if n == 0 {
			return ""
		}
		return fmt.Sprintf(" srtt_mean=%.1f srtt_max=%d", float64(sum)/float64(n), most)
	}
}

func dial(block kcp.BlockCrypt) *kcp.UDPSession {
	s, err := kcp.DialWithOptions(*connect, block, *ds, *ps)
	if err != nil {
		fail("dial: %v", err)
	}
	configure(s)
	return s
}

func echoClient(block kcp.BlockCrypt) {
	period := pattern(*seed, *nbytes)
	s := dial(block)
	srtt := srttSampler(s)
	start, cpu0 := time.Now(), cpuSeconds()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, *chunk)
		for off := int64(0); off < *nbytes; {
			n := int64(len(buf))
			if *nbytes-off < n {
				n = *nbytes - off
			}
			fill(buf[:n], period, off)
			if _, err := s.Write(buf[:n]); err != nil {
				fail("write at %d: %v", off, err)
			}
			off += n
		}
	}()
	buf := make([]byte, 65536)
	want := make([]byte, 65536)
	for off := int64(0); off < *nbytes; {
		n, err := s.Read(buf)
		if err != nil {
			fail("read at %d: %v", off, err)
		}
		if off+int64(n) > *nbytes {
			fail("echo longer than sent: %d > %d", off+int64(n), *nbytes)
		}
		fill(want[:n], period, off)
		for i := 0; i < n; i++ {
			if buf[i] != want[i] {
				fail("byte %d differs: got %#x want %#x", off+int64(i), buf[i], want[i])
			}
		}
		off += int64(n)
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("OK bytes=%d seconds=%.6f cpu=%.6f conv=%d%s%s\n", *nbytes, el, cpuSeconds()-cpu0, s.GetConv(), resendFigures(), srtt())
	s.Close()
}

func sendClient(block kcp.BlockCrypt) {
	period := pattern(*seed, patternPeriod)
	period = append(period, period[:*chunk]...) // so any chunk is one slice
	if *sessions > 1 {
		multiSend(block, period)
		return
	}
	s := dial(block)
	srtt := srttSampler(s)
	start, cpu0 := time.Now(), cpuSeconds()
	sendOne(s, period, *nbytes)
	el := time.Since(start).Seconds()
	fmt.Printf("OK bytes=%d seconds=%.6f cpu=%.6f%s%s\n", *nbytes, el, cpuSeconds()-cpu0, resendFigures(), srtt())
	s.Close()
}

// multiSend: -sessions sessions, dialed first, then all sending nbytes/sessions at once.
func multiSend(block kcp.BlockCrypt, period []byte) {
	each := *nbytes / int64(*sessions)
	conns := make([]*kcp.UDPSession, *sessions)
	for i := range conns {
		conns[i] = dial(block)
	}
	start, cpu0 := time.Now(), cpuSeconds()
	var wg sync.WaitGroup
	for _, s := range conns {
		wg.Add(1)
		go func(s *kcp.UDPSession) {
			defer wg.Done()
			sendOne(s, period, each)
		}(s)
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	sn := kcp.DefaultSnmp.Copy()
	fmt.Printf("OK bytes=%d seconds=%.6f cpu=%.6f out_pkts=%d retrans=%d fast=%d early=%d lost=%d\n",
		each*int64(*sessions), el, cpuSeconds()-cpu0, sn.OutPkts, sn.RetransSegs,
		sn.FastRetransSegs, sn.EarlyRetransSegs, sn.LostSegs)
	for _, s := range conns {
		s.Close()
	}
}

// sendOne: an 8-byte big-endian length, the pattern, then wait for "DONE".
func sendOne(s *kcp.UDPSession, period []byte, total int64) {
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(total))
	if _, err := s.Write(hdr[:]); err != nil {
		fail("write: %v", err)
	}
	for off := int64(0); off < total; {
		n := int64(*chunk)
		if total-off < n {
			n = total - off
		}
		i := off % patternPeriod
		if _, err := s.Write(period[i : i+n]); err != nil {
			fail("write at %d: %v", off, err)
		}
		off += n
	}
	var done [4]byte
	if _, err := io.ReadFull(s, done[:]); err != nil || string(done[:]) != "DONE" {
		fail("no DONE: %v %q", err, done)
	}
}

func pingClient(block kcp.BlockCrypt) {
	s := dial(block)
	msg := make([]byte, *size)
	got := make([]byte, *size)
	var rtts []float64
	warm := 20
	for i := 0; i < *rounds+warm; i++ {
		msg[0] = byte(i)
		t0 := time.Now()
		if _, err := s.Write(msg); err != nil {
			fail("write: %v", err)
		}
		if _, err := io.ReadFull(s, got); err != nil {
			fail("read: %v", err)
		}
		if got[0] != msg[0] {
			fail("round %d: wrong echo", i)
		}
		if i >= warm {
			rtts = append(rtts, time.Since(t0).Seconds()*1e6)
		}
	}
	sort.Float64s(rtts)
	q := func(p float64) float64 { return rtts[int(p*float64(len(rtts)-1))] }
	fmt.Printf("OK rounds=%d p50_us=%.1f p99_us=%.1f\n", len(rtts), q(0.5), q(0.99))
	s.Close()
}
