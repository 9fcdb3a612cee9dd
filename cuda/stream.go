package cuda

import (
	"fmt"
	"time"
)

// Stream is a CUDA stream of the device: work queued on one stream runs in
// order, work on different streams may overlap. Streams are created
// non-blocking, so they do not synchronise with the legacy default stream.
type Stream struct {
	d *Device
	s uintptr
}

// NewStream creates a stream.
func (d *Device) NewStream() (*Stream, error) {
	s := &Stream{d: d}
	err := d.do(func() error {
		if err := check("cuStreamCreate", d.api.cuStreamCreate(&s.s, streamNonBlocking)); err != nil {
			return err
		}
		d.streams[s.s] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// handle returns the CUstream of s, the device's own stream for nil.
func (s *Stream) handle(d *Device) uintptr {
	if s == nil {
		return d.stream
	}
	return s.s
}

// Synchronize waits for the work queued on s.
func (s *Stream) Synchronize() error {
	return s.d.do(func() error { return check("cuStreamSynchronize", s.d.api.cuStreamSynchronize(s.s)) })
}

// Wait makes later work on s wait until e has completed.
func (s *Stream) Wait(e *Event) error {
	return s.d.do(func() error { return check("cuStreamWaitEvent", s.d.api.cuStreamWaitEvent(s.s, e.e, 0)) })
}

// Close destroys the stream once its queued work is done.
func (s *Stream) Close() error {
	return s.d.do(func() error {
		if !s.d.streams[s.s] {
			return fmt.Errorf("cuda: stream closed twice")
		}
		delete(s.d.streams, s.s)
		return check("cuStreamDestroy_v2", s.d.api.cuStreamDestroy(s.s))
	})
}

// Event marks a point in a stream, to wait for or to time.
type Event struct {
	d *Device
	e uintptr
}

// NewEvent creates an event that records timing.
func (d *Device) NewEvent() (*Event, error) {
	e := &Event{d: d}
	err := d.do(func() error {
		if err := check("cuEventCreate", d.api.cuEventCreate(&e.e, eventDefault)); err != nil {
			return err
		}
		d.events[e.e] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Record marks the current end of stream s (nil: the device's own stream,
// which Upload, Download and the backend use).
func (e *Event) Record(s *Stream) error {
	return e.d.do(func() error { return check("cuEventRecord", e.d.api.cuEventRecord(e.e, s.handle(e.d))) })
}

// Synchronize waits until the work before the event's record has completed.
func (e *Event) Synchronize() error {
	return e.d.do(func() error { return check("cuEventSynchronize", e.d.api.cuEventSynchronize(e.e)) })
}

// Close destroys the event.
func (e *Event) Close() error {
	return e.d.do(func() error {
		if !e.d.events[e.e] {
			return fmt.Errorf("cuda: event closed twice")
		}
		delete(e.d.events, e.e)
		return check("cuEventDestroy_v2", e.d.api.cuEventDestroy(e.e))
	})
}

// Elapsed returns the GPU time between two recorded, completed events (with
// a resolution of about half a microsecond).
func Elapsed(start, end *Event) (time.Duration, error) {
	if start.d != end.d {
		return 0, fmt.Errorf("cuda: Elapsed: events of different devices")
	}
	var ms float32
	err := start.d.do(func() error {
		return check("cuEventElapsedTime", start.d.api.cuEventElapsedTime(&ms, start.e, end.e))
	})
	return time.Duration(float64(ms) * float64(time.Millisecond)), err
}
