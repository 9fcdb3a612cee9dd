package linalg

import "fmt"

// ScoreStreamer is implemented by backends that score rows streamed from
// host memory against a fixed set of queries better than Sgemm call by call:
// the cuda backend keeps the queries on the GPU, copies each chunk of rows
// in its stored precision (half the bytes of float32 for f16 and bf16),
// widens and multiplies it there while the next chunk is copied, and sends
// back only top-k candidates, or the scores when they are asked for.
// influence.StreamScores uses it when the backend has it.
type ScoreStreamer interface {
	// NewScoreStream copies the queries (n_query × dim float32 values, at
	// least one of each) to where the backend computes, and returns a
	// stream that scores chunks of raw rows against them. It returns an
	// error when the backend cannot stream on this machine (no kernels, not
	// enough memory), in which case the caller computes the scores some
	// other way.
	NewScoreStream(queries *Dense32, opt ScoreStreamOptions) (ScoreStream, error)
}

// ScoreBlock is the number of rows a ScoreStream multiplies at a time.
// Chunks that start at multiples of ScoreBlock rows get the same scores
// however the stream is cut into chunks.
const ScoreBlock = 1024

// ScoreStreamOptions configure a ScoreStream.
type ScoreStreamOptions struct {
	// Parts splits every row, and the columns of the queries, into runs of
	// values of their own element type, in order: one per store when the
	// rows of several stores are scored side by side. Their Cols add up to
	// the queries' Cols. Nil means a single part of float32 values.
	Parts []RowPart
	// MaxRows is the largest number of rows a chunk will hold.
	MaxRows int
	// TopK asks for candidates for the TopK most helpful (highest) and most
	// harmful (lowest) scores of each query (0: none).
	TopK int
	// Scores asks for the whole block of scores of every chunk instead of
	// candidates; TopK is then ignored.
	Scores bool
}

// RowPart is a run of Cols values of one element type in a raw row.
type RowPart struct {
	Type DType
	Cols int
}

// DType is the element type of raw rows: little-endian IEEE binary32,
// binary16 or bfloat16.
type DType uint8

const (
	F32  DType = iota // float32, the zero value
	F16               // IEEE binary16
	BF16              // bfloat16, the upper half of a float32
)

// Size returns the size of a value in bytes, 0 for an unknown type.
func (t DType) Size() int {
	switch t {
	case F32:
		return 4
	case F16, BF16:
		return 2
	}
	return 0
}

func (t DType) String() string {
	switch t {
	case F32:
		return "f32"
	case F16:
		return "f16"
	case BF16:
		return "bf16"
	}
	return fmt.Sprintf("DType(%d)", uint8(t))
}

// ScoreStream scores chunks of rows against the queries it was opened with.
// The score of query i and row t is Σ_j queries[i][j]·row_t[j] in float32,
// the values of row t widened exactly, summed in an order of the backend's
// choosing that is the same for every row (see ScoreBlock), then multiplied
// by the row's weight when the chunk has weights: one float32 product.
//
// Chunks are pipelined: Send queues one and returns, so that the caller can
// read the next chunk while the backend copies and multiplies; Receive
// returns results in the order the chunks were sent. At most two chunks may
// be waiting for Receive. A stream is used from one goroutine at a time.
//
//	s, err := be.(linalg.ScoreStreamer).NewScoreStream(q, opt)
//	…
//	defer s.Close()
//	for each chunk c {
//		if two are queued { r, err := s.Receive(); … }
//		err := s.Send(c)
//	}
//	receive the rest
type ScoreStream interface {
	// Send queues the scoring of a chunk. It is done with the chunk's
	// slices when it returns: the caller may reuse them, or unmap the file
	// they come from. It fails when two chunks are waiting for Receive. An
	// error names the chunk; the stream is then unusable but for Close.
	Send(c RawChunk) error
	// Receive waits for the oldest chunk queued and returns its results,
	// valid until the next call of Receive or Close.
	Receive() (*ChunkScores, error)
	// Close waits for the work queued and frees the stream's memory; the
	// results of chunks not received are dropped. It may be called more
	// than once.
	Close() error
}

// RawChunk is a run of consecutive rows as they are stored.
type RawChunk struct {
	Offset int // index of the first row in the stream (its row in the store)
	Rows   int // 1 ≤ Rows ≤ MaxRows
	// Parts[c] holds part c of every row: Rows × Parts[c].Cols values of
	// type Parts[c].Type, row after row.
	Parts [][]byte
	// Weights, when not nil, holds one factor per row that multiplies its
	// scores, before the top-k.
	Weights []float32
}

// ChunkScores are the results of a chunk.
type ChunkScores struct {
	Offset, Rows int // as sent
	// Scores is the n_query × Rows block of scores when the stream was
	// opened with Scores set, else nil.
	Scores *Dense32
	// Helpful and Harmful are the top-k candidates when TopK > 0 and
	// Scores is not set.
	Helpful, Harmful Candidates
}

// Candidates are rows of a chunk that may be among a query's top-k: for
// every query N distinct rows, in no particular order, that include the chunk's
// k best rows by score (highest for the most helpful, lowest for the most
// harmful; on equal scores the lower row is better), and may include
// others. The k best entries of the union of every chunk's candidates, in
// that order, are the k best rows of the whole stream.
type Candidates struct {
	N     int       // entries per query
	Index []int64   // rows (in the stream) of query i's entries: Index[i·N : (i+1)·N]
	Score []float32 // their scores, laid out as Index
}
