// Command goload keeps RPCs in flight against a CRI socket and prints their latencies.
//
// One process, one gRPC connection, -concurrency goroutines in a closed loop for -seconds
// after a one-second warm-up. Output: one JSON object, the same shape bench/cri/load.py
// prints: {"rpc", "seconds", "latencies_ms", "errors"}.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	endpoint := flag.String("endpoint", "", "unix:///path/to/socket")
	rpc := flag.String("rpc", "ContainerStatus", "ContainerStatus | ListContainers | Version")
	ids := flag.String("ids", "", "container IDs, comma-separated")
	concurrency := flag.Int("concurrency", 8, "RPCs in flight")
	seconds := flag.Float64("seconds", 10, "measured seconds")
	warmup := flag.Float64("warmup", 1, "unmeasured seconds first")
	flag.Parse()
	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer conn.Close()
	client := runtimeapi.NewRuntimeServiceClient(conn)
	idList := strings.Split(*ids, ",")
	call := func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var err error
		switch *rpc {
		case "ContainerStatus":
			_, err = client.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: idList[i%len(idList)]})
		case "ListContainers":
			_, err = client.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		case "ListPodSandbox":
			_, err = client.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		case "Version":
			_, err = client.Version(ctx, &runtimeapi.VersionRequest{})
		default:
			err = fmt.Errorf("unknown rpc %q", *rpc)
		}
		return err
	}
	if err := call(0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	start := time.Now()
	measureFrom := start.Add(time.Duration(*warmup * float64(time.Second)))
	stopAt := measureFrom.Add(time.Duration(*seconds * float64(time.Second)))
	var mu sync.Mutex
	latencies := []float64{}
	errors := map[string]int{}
	var wg sync.WaitGroup
	for k := 0; k < *concurrency; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			mine := []float64{}
			for i := k; ; i += *concurrency {
				t0 := time.Now()
				if !t0.Before(stopAt) {
					break
				}
				if err := call(i); err != nil {
					mu.Lock()
					errors[status.Code(err).String()]++
					mu.Unlock()
					continue
				}
				if !t0.Before(measureFrom) {
					mine = append(mine, float64(time.Since(t0).Nanoseconds())/1e6)
				}
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		}(k)
	}
	wg.Wait()
	json.NewEncoder(os.Stdout).Encode(map[string]any{"rpc": *rpc, "seconds": *seconds,
		"latencies_ms": latencies, "errors": errors})
}
