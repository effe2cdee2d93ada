namespace Monitoring.Stream.Sinks;

/// <summary>
/// A destination of closed windows. The pipeline calls <see cref="WriteAsync"/> from one task per sink,
/// one batch at a time, through a bounded queue; a thrown exception is retried with backoff.
/// Completing the returned task acknowledges the batch.
/// </summary>
/// <remarks>
/// One exception to "one at a time": an attempt still running when its <c>SinkOptions.AttemptTimeout</c> passes is
/// given up (a timeout in the sink's metrics, and a failed attempt: the batch is retried, or failed, by the sink's
/// retry settings) without waiting for it to end, so a sink that ignores its cancellation token can see the next
/// call while the given-up one still runs. A sink that honours the token and returns promptly never sees two calls at
/// once; one that may not must be safe for a second call beside it (the Arrow file store takes a lock). The batch a
/// given-up call holds stays valid until that call really ends.
/// </remarks>
public interface IWindowSink : IAsyncDisposable
{
    /// <summary>A short name for logs and self-metrics.</summary>
    string Name { get; }

    /// <summary>Writes one window batch; returns when it is durably accepted.</summary>
    ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken);

    /// <summary>Called once after the last batch, before disposal: finish and publish anything buffered.</summary>
    ValueTask CompleteAsync(CancellationToken cancellationToken);
}
