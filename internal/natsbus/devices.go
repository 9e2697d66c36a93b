package natsbus

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/internal/task"
)

// DeviceMemory is what pollers learnt about devices, shared through the
// flock_devices bucket. Every poller keeps a local copy, updated by a watch,
// so looking a device up costs no round trip.
type DeviceMemory struct {
	bucket *Bucket
	mu     sync.RWMutex
	m      map[string]task.Quirks
	stop   func()
}

// DeviceMemory opens the bucket and follows it until ctx ends or Close.
func (b *Bus) DeviceMemory(ctx context.Context) (*DeviceMemory, error) {
	bk, err := b.openDeviceBucket(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	w, err := bk.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch %s: %w", DeviceBucket, err)
	}
	d := &DeviceMemory{bucket: bk, m: map[string]task.Quirks{}}
	ready := make(chan struct{})
	done := make(chan struct{})
	d.stop = func() { cancel(); _ = w.Stop(); <-done }
	go func() {
		defer close(done)
		initial := true
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil { // the stored values are all in
					if initial {
						close(ready)
						initial = false
					}
					continue
				}
				var q task.Quirks
				if err := json.Unmarshal(e.Value(), &q); err != nil {
					b.log.Warn("undecodable device quirks; ignored", "key", e.Key(), "err", err)
					continue
				}
				d.mu.Lock()
				d.m[e.Key()] = q
				d.mu.Unlock()
			case <-ctx.Done():
				return
			}
		}
	}()
	select {
	case <-ready:
	case <-ctx.Done():
	}
	return d, nil
}

// Quirks returns what is known of the device at key ("<site>.<hostkey>").
func (d *DeviceMemory) Quirks(key string) (task.Quirks, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	q, ok := d.m[key]
	return q, ok
}

// Learn stores what a poller found out about a device.
func (d *DeviceMemory) Learn(ctx context.Context, key string, q task.Quirks) error {
	data, err := json.Marshal(q)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.m[key] = q
	d.mu.Unlock()
	return d.bucket.Put(ctx, key, data)
}

// Close stops following the bucket.
func (d *DeviceMemory) Close() { d.stop() }

const deviceBucketDescription = "Flock pollers: what each device taught them"

// openDeviceBucket opens the device bucket, creating it when this identity
// may; a poller that may not (config/nats-server.conf) waits for the
// dispatcher to create it, as it waits for its consumer.
func (b *Bus) openDeviceBucket(ctx context.Context) (*Bucket, error) {
	var bk *Bucket
	err := waitFor(ctx, b.log, "waiting for the device bucket; the dispatcher creates it", func() error {
		// Only opened: the dispatcher creates it (EnsureStreams). A poller
		// may not create buckets, and under the shipped permissions the
		// attempt would wait out the request timeout instead of retrying.
		kv, err := b.js.KeyValue(ctx, DeviceBucket)
		if err != nil {
			return err
		}
		bk = &Bucket{kv: kv}
		return nil
	}, "bucket", DeviceBucket)
	if err != nil {
		return nil, fmt.Errorf("open key-value bucket %s: %w", DeviceBucket, err)
	}
	return bk, nil
}
