// Package accel names the optional capabilities a linalg.Backend may offer
// beyond its interface, found by type assertion as io.WriterTo is found on
// an io.Reader:
//
//	if p, ok := be.(accel.Projector); ok {
//		err = p.ProjectRademacher(dst, x, d, k, seed, stream)
//	}
//
// A backend that runs on a device (the cuda package) implements them so
// that the pipeline's heavy steps run there: seeded projections (gradients),
// EK-FAC scaling (ekfac) and score streaming (linalg.ScoreStreamer, used
// by influence). Each capability computes exactly what the host computes:
// projections and scaling bit for bit, as the design promises; a caller
// without the capability, or whose call fails, computes on the host.
package accel
