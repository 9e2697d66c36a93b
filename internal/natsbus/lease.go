package natsbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/internal/lease"
)

// LeaseBucket holds the dispatchers' lease (key "leader") and their member
// entries; its entries expire a lease TTL after their last write.
const LeaseBucket = "flock_dispatchers"

// LeaseStore is the lease.Store of a JetStream KV bucket whose entries
// expire after the lease's TTL.
type LeaseStore struct {
	kv jetstream.KeyValue
}

var _ lease.Store = (*LeaseStore)(nil)

// Leases opens the dispatchers' lease bucket, creating it with ttl when it
// does not exist, and returns it with the TTL it applies: an existing
// bucket keeps its own, so that a dispatcher started with another
// lease_ttl cannot shorten the lease under the leader.
func (b *Bus) Leases(ctx context.Context, ttl time.Duration) (*LeaseStore, time.Duration, error) {
	kv, err := b.js.KeyValue(ctx, LeaseBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = b.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: LeaseBucket, Description: "Flock dispatchers: the leader's lease and who stands by",
			History: 1, TTL: ttl, Storage: jetstream.FileStorage, Replicas: max(b.replicas, 1),
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // another dispatcher made it meanwhile
			kv, err = b.js.KeyValue(ctx, LeaseBucket)
		}
	}
	if err != nil {
		return nil, 0, fmt.Errorf("key-value bucket %s: %w", LeaseBucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("key-value bucket %s: %w", LeaseBucket, err)
	}
	if st.TTL() <= 0 {
		return nil, 0, fmt.Errorf("key-value bucket %s has no TTL: its lease would never expire; delete it with every dispatcher stopped", LeaseBucket)
	}
	return &LeaseStore{kv: kv}, st.TTL(), nil
}

// OpenLeases opens the lease bucket without creating it (for a client).
func (b *Bus) OpenLeases(ctx context.Context) (*LeaseStore, error) {
	kv, err := b.js.KeyValue(ctx, LeaseBucket)
	if err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", LeaseBucket, err)
	}
	return &LeaseStore{kv: kv}, nil
}

// taken maps a compare-and-set conflict to lease.ErrTaken and names the
// bucket, key and operation of any error.
func taken(op, key string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("%s %s in %s: %w: %w", op, key, LeaseBucket, lease.ErrTaken, err)
	}
	return fmt.Errorf("%s %s in %s: %w", op, key, LeaseBucket, err)
}

// Create writes value under key if the key holds nothing.
func (s *LeaseStore) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := s.kv.Create(ctx, key, value)
	return rev, taken("create", key, err)
}

// Update writes value under key if its revision is still rev.
func (s *LeaseStore) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	rev, err := s.kv.Update(ctx, key, value, rev)
	return rev, taken("update", key, err)
}

// Delete removes key if its revision is still rev.
func (s *LeaseStore) Delete(ctx context.Context, key string, rev uint64) error {
	return taken("delete", key, s.kv.Delete(ctx, key, jetstream.LastRevision(rev)))
}

// Put writes value under key.
func (s *LeaseStore) Put(ctx context.Context, key string, value []byte) error {
	_, err := s.kv.Put(ctx, key, value)
	return taken("put", key, err)
}

// Remove deletes key.
func (s *LeaseStore) Remove(ctx context.Context, key string) error {
	return taken("delete", key, s.kv.Delete(ctx, key))
}

// Get returns key's value and revision, or nil when it holds none.
func (s *LeaseStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, taken("get", key, err)
	}
	return e.Value(), e.Revision(), nil
}

// All returns every key's value.
func (s *LeaseStore) All(ctx context.Context) (map[string][]byte, error) {
	return (&Bucket{kv: s.kv}).All(ctx)
}

// WatchRemoved calls fn each time key is deleted or purged.
func (s *LeaseStore) WatchRemoved(ctx context.Context, key string, fn func()) (stop func(), err error) {
	w, err := s.kv.Watch(ctx, key, jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("watch %s in %s: %w", key, LeaseBucket, err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil && e.Operation() != jetstream.KeyValuePut {
					fn()
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		close(done)
		_ = w.Stop()
	}, nil
}
