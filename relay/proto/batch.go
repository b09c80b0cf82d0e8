package proto

// MaxCompleteBatch bounds the completions of one CompleteBatchRequest; the
// whole request frame is bounded by MaxRequestFrame as any other.
const MaxCompleteBatch = 256
