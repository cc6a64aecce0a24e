// kcpsock's interop peer.  Built offline in GOPATH mode against Debian's
// golang-github-xtaci-kcp-dev (tests/interop/conftest.py copies this folder
// into a GOPATH under tests/interop/.build/): a go.mod here is what lets the
// github.com/xtaci/kcp-go/v5 import resolve to Debian's tree.
module kcppeer

go 1.19
