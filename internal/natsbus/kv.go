package natsbus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket names.
const (
	// HostStateBucket holds the dispatcher's per-host state, key <site>.<hostkey>.
	HostStateBucket = "flock_hosts"
	// DeviceBucket holds what devices taught pollers (bulk refused, working max-repetitions), key <site>.<hostkey>.
	DeviceBucket = "flock_devices"
)

// Bucket is a JetStream key-value bucket holding one JSON document per key.
type Bucket struct {
	kv jetstream.KeyValue
}

// Bucket creates (or opens) a key-value bucket keeping the latest value of each key.
func (b *Bus) Bucket(ctx context.Context, name, description string) (*Bucket, error) {
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: name, Description: description, History: 1, Storage: jetstream.FileStorage, Replicas: max(b.replicas, 1),
	})
	if err != nil {
		return nil, replicaErr("key-value bucket "+name, max(b.replicas, 1), err)
	}
	return &Bucket{kv: kv}, nil
}

// OpenBucket opens an existing bucket without creating or changing it
// (a client such as `dispatcher status`).
func (b *Bus) OpenBucket(ctx context.Context, name string) (*Bucket, error) {
	kv, err := b.js.KeyValue(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", name, err)
	}
	return &Bucket{kv: kv}, nil
}

// Put stores value under key.
func (k *Bucket) Put(ctx context.Context, key string, value []byte) error {
	if _, err := k.kv.Put(ctx, key, value); err != nil {
		return fmt.Errorf("put %s in %s: %w", key, k.kv.Bucket(), err)
	}
	return nil
}

// Get returns the value of key, or nil and no error when there is none.
func (k *Bucket) Get(ctx context.Context, key string) ([]byte, error) {
	e, err := k.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get %s from %s: %w", key, k.kv.Bucket(), err)
	}
	return e.Value(), nil
}

// All returns every key's current value.
func (k *Bucket) All(ctx context.Context) (map[string][]byte, error) {
	w, err := k.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", k.kv.Bucket(), err)
	}
	defer w.Stop()
	out := map[string][]byte{}
	for {
		select {
		case e := <-w.Updates():
			if e == nil { // the initial values are all in
				return out, nil
			}
			out[e.Key()] = e.Value()
		case <-ctx.Done():
			return nil, fmt.Errorf("read %s: %w", k.kv.Bucket(), ctx.Err())
		}
	}
}
