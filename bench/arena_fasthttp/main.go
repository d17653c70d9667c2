// arena_fasthttp: the HttpArena routes bench/arena.sh measures (baseline, pipelined, json, json-comp,
// upload), written in the fastest common Go style: valyala/fasthttp (Debian's 1.31), encoding/json, one
// process, GOMAXPROCS from the environment. Built in GOPATH mode against Debian's
// golang-github-valyala-fasthttp-dev (and golang-github-andybalholm-brotli-dev, which fasthttp uses).
//
//	GET|POST /baseline11?a=&b=  a+b (+ the body's integer) as text/plain
//	GET /pipeline               ok
//	GET /json/{count}?m=        the first count items of DATASET with total = price*quantity*m,
//	                            built and marshalled per request; coded by fasthttp's own
//	                            CompressHandlerBrotliLevel (br quality 1, else gzip level 1: apiary's
//	                            defaults) when Accept-Encoding allows it (json-comp)
//	POST /upload                the body's length, read from fasthttp's body stream
//	                            (StreamRequestBody: bodies over the 4 MiB default limit reach the
//	                            handler as a stream instead of being held whole)
//
// usage: arena_fasthttp PORT DATASET
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"

	"github.com/valyala/fasthttp"
)

type rating struct {
	Score int64 `json:"score"`
	Count int64 `json:"count"`
}

type item struct {
	ID       int64    `json:"id"`
	Name     string   `json:"name"`
	Category string   `json:"category"`
	Price    int64    `json:"price"`
	Quantity int64    `json:"quantity"`
	Active   bool     `json:"active"`
	Tags     []string `json:"tags"`
	Rating   rating   `json:"rating"`
	Total    int64    `json:"total"`
}

type answer struct {
	Items []item `json:"items"`
	Count int    `json:"count"`
}

var dataset []item

func plain(ctx *fasthttp.RequestCtx, code int, body string) {
	ctx.SetStatusCode(code)
	ctx.SetContentType("text/plain")
	ctx.SetBodyString(body)
}

func baseline(ctx *fasthttp.RequestCtx) {
	a, err1 := ctx.QueryArgs().GetUint("a")
	b, err2 := ctx.QueryArgs().GetUint("b")
	if err1 != nil || err2 != nil {
		plain(ctx, 400, "a and b must be integers")
		return
	}
	sum := a + b
	if ctx.IsPost() {
		body := bytes.TrimSpace(ctx.PostBody())
		if len(body) > 0 {
			n, err := strconv.Atoi(string(body))
			if err != nil {
				plain(ctx, 400, "the body must be an integer")
				return
			}
			sum += n
		}
	}
	plain(ctx, 200, strconv.Itoa(sum))
}

func jsonItems(ctx *fasthttp.RequestCtx, countText string) {
	count, err := strconv.Atoi(countText)
	if err != nil || count < 1 {
		plain(ctx, 400, "count must be a positive integer")
		return
	}
	if count > len(dataset) {
		count = len(dataset)
	}
	m := int64(1)
	if ctx.QueryArgs().Has("m") {
		v, err := ctx.QueryArgs().GetUint("m")
		if err != nil {
			plain(ctx, 400, "m must be an integer")
			return
		}
		m = int64(v)
	}
	out := answer{Items: make([]item, count), Count: count}
	for i := 0; i < count; i++ {
		it := dataset[i]
		it.Total = it.Price * it.Quantity * m
		out.Items[i] = it
	}
	b, _ := json.Marshal(out)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

func upload(ctx *fasthttp.RequestCtx) {
	// the stream first: PostBody() on a streamed request would read the whole body into memory
	if stream := ctx.RequestBodyStream(); stream != nil {
		n, err := io.Copy(io.Discard, stream)
		if err != nil {
			plain(ctx, 400, "the body ended early")
			return
		}
		plain(ctx, 200, strconv.FormatInt(n, 10))
		return
	}
	n := int64(len(ctx.PostBody()))
	plain(ctx, 200, strconv.FormatInt(n, 10))
}

func handler(ctx *fasthttp.RequestCtx) {
	path := string(ctx.Path())
	switch {
	case path == "/baseline11":
		baseline(ctx)
	case path == "/pipeline":
		plain(ctx, 200, "ok")
	case path == "/upload" && ctx.IsPost():
		upload(ctx)
	case len(path) > 6 && path[:6] == "/json/":
		jsonItems(ctx, path[6:])
	default:
		plain(ctx, 404, "not found")
	}
}

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: arena_fasthttp PORT DATASET")
	}
	data, err := os.ReadFile(os.Args[2])
	if err != nil {
		log.Fatal(err)
	}
	if err := json.Unmarshal(data, &dataset); err != nil {
		log.Fatal(err)
	}
	addr := "127.0.0.1:" + os.Args[1]
	fmt.Printf("listening on %s fasthttp (Debian 1.31), %d items\n", addr, len(dataset))
	s := &fasthttp.Server{
		Handler:           fasthttp.CompressHandlerBrotliLevel(handler, 1, 1),
		Name:              "fasthttp",
		StreamRequestBody: true,
	}
	log.Fatal(s.ListenAndServe(addr))
}
