// A Go gRPC server for the zt-trace end-to-end tests: zt.test.Inventory
// (tests/topology/proto/inventory.proto) served by grpc-go, whose handlers
// call HTTP/1 services over one shared keep-alive http.Client.
//
// GetItem and Stock(ItemRequest{id, rid}) each call auth GET
// /validate?n=<id>&rid=<rid> from the handler's goroutine and profile GET
// /profile/<id>?rid=<rid> from a goroutine the handler creates and waits
// for, then answer Item{id, name, stock}. gRPC-Go reads every stream on one
// goroutine per connection and writes every response from another (its
// "loopy" writer): the goroutine that answers is not the one serving.
//
// Messages are encoded by hand (two fields each), so no generated code is
// needed: a codec named "proto" passes the bytes through.
//
// Build: GOPATH=/usr/share/gocode GO111MODULE=off go build grpc_gateway.go
// (Debian's golang-google-grpc-dev). Usage: grpc_gateway PORT auth=PORT
// profile=PORT
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
)

type passthrough struct{}

func (passthrough) Name() string { return "proto" }
func (passthrough) Marshal(v interface{}) ([]byte, error) {
	return *(v.(*[]byte)), nil
}
func (passthrough) Unmarshal(d []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), d...)
	return nil
}

func uvarint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}

// request decodes ItemRequest{int64 id = 1; string rid = 2}.
func request(b []byte) (id int64, rid string, err error) {
	for len(b) > 0 {
		key, n := uvarint(b)
		if n == 0 {
			return 0, "", errors.New("bad key")
		}
		b = b[n:]
		switch key {
		case 1<<3 | 0:
			v, n := uvarint(b)
			if n == 0 {
				return 0, "", errors.New("bad id")
			}
			id, b = int64(v), b[n:]
		case 2<<3 | 2:
			l, n := uvarint(b)
			if n == 0 || int(l) > len(b)-n {
				return 0, "", errors.New("bad rid")
			}
			rid, b = string(b[n:n+int(l)]), b[n+int(l):]
		default:
			return 0, "", fmt.Errorf("unexpected field %d", key)
		}
	}
	return id, rid, nil
}

func putUvarint(out []byte, v uint64) []byte {
	for v >= 0x80 {
		out = append(out, byte(v)|0x80)
		v >>= 7
	}
	return append(out, byte(v))
}

// item encodes Item{int64 id = 1; string name = 2; int64 stock = 3}.
func item(id int64, name string, stock int64) []byte {
	out := putUvarint([]byte{1 << 3}, uint64(id))
	out = append(out, 2<<3|2)
	out = putUvarint(out, uint64(len(name)))
	out = append(out, name...)
	out = append(out, 3<<3)
	return putUvarint(out, uint64(stock))
}

var client = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64},
}

func get(url string) int {
	resp, err := client.Get(url)
	if err != nil {
		log.Printf("GET %s: %v", url, err)
		return 599
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

var down = map[string]string{}

func handler(name string) func(interface{}, context.Context, func(interface{}) error, grpc.UnaryServerInterceptor) (interface{}, error) {
	return func(_ interface{}, _ context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
		var in []byte
		if err := dec(&in); err != nil {
			return nil, err
		}
		id, rid, err := request(in)
		if err != nil {
			return nil, err
		}
		fan := make(chan int, 1)
		go func() {
			fan <- get(fmt.Sprintf("http://127.0.0.1:%s/profile/%d?rid=%s", down["profile"], id, rid))
		}()
		get(fmt.Sprintf("http://127.0.0.1:%s/validate?n=%d&rid=%s", down["auth"], id, rid))
		<-fan
		out := item(id, name, 3)
		return &out, nil
	}
}

func main() {
	encoding.RegisterCodec(passthrough{})
	for _, a := range os.Args[2:] {
		kv := strings.SplitN(a, "=", 2)
		down[kv[0]] = kv[1]
	}
	desc := grpc.ServiceDesc{
		ServiceName: "zt.test.Inventory",
		HandlerType: (*interface{})(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "GetItem", Handler: handler("item")},
			{MethodName: "Stock", Handler: handler("stock")},
		},
		Metadata: "inventory.proto",
	}
	s := grpc.NewServer()
	var impl interface{} = struct{}{}
	s.RegisterService(&desc, impl)
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(s.Serve(l))
}
