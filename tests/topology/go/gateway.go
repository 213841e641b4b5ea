// A Go gateway for the zt-trace end-to-end tests (stdlib only).
//
// GET /api/users/<n>?rid=<id> calls, over one shared keep-alive
// http.Client:
//   - profile GET /profile/<n> from a goroutine it spawns (a fan-out, like
//     errgroup), started first and joined last;
//   - auth GET /validate?n=<n>, then users GET /users/<n>, in sequence.
// Every call passes the ground-truth id on in its query. The answer is the
// first failure: auth's status if not 200, 502 if users or profile failed,
// else 200.
//
// Usage: gateway PORT auth=PORT users=PORT profile=PORT
package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"
)

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

func main() {
	port := os.Args[1]
	down := map[string]string{}
	for _, a := range os.Args[2:] {
		kv := strings.SplitN(a, "=", 2)
		down[kv[0]] = kv[1]
	}
	url := func(svc, path string) string {
		return fmt.Sprintf("http://127.0.0.1:%s%s", down[svc], path)
	}
	http.HandleFunc("/api/users/", func(w http.ResponseWriter, r *http.Request) {
		n := strings.TrimPrefix(r.URL.Path, "/api/users/")
		rid := r.URL.Query().Get("rid")
		fan := make(chan int, 1)
		go func() { fan <- get(url("profile", "/profile/"+n+"?rid="+rid)) }()
		status := 200
		if a := get(url("auth", "/validate?n="+n+"&rid="+rid)); a != 200 {
			status = a
		}
		if u := get(url("users", "/users/"+n+"?rid="+rid)); u != 200 && status == 200 {
			status = 502
		}
		if p := <-fan; p != 200 && status == 200 {
			status = 502
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, "{\"rid\":%q,\"status\":%d}\n", rid, status)
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:"+port, nil))
}
