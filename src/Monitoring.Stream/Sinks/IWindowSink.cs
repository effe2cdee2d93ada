namespace Monitoring.Stream.Sinks;

/// <summary>
/// A destination of closed windows. The pipeline calls <see cref="WriteAsync"/> from one task per sink,
/// one batch at a time, through a bounded queue; a thrown exception is retried with backoff.
/// Completing the returned task acknowledges the batch.
/// </summary>
public interface IWindowSink : IAsyncDisposable
{
    /// <summary>A short name for logs and self-metrics.</summary>
    string Name { get; }

    /// <summary>Writes one window batch; returns when it is durably accepted.</summary>
    ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken);

    /// <summary>Called once after the last batch, before disposal: finish and publish anything buffered.</summary>
    ValueTask CompleteAsync(CancellationToken cancellationToken);
}
