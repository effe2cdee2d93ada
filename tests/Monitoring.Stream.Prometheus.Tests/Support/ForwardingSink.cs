using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Prometheus.Tests.Support;

/// <summary>Passes batches to another sink and counts the writes that have completed, i.e. the windows acknowledged.</summary>
internal sealed class ForwardingSink(IWindowSink inner) : IWindowSink
{
    private int _completed;

    public int Completed => Volatile.Read(ref _completed);

    public string Name => inner.Name;

    public async ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
    {
        await inner.WriteAsync(batch, cancellationToken);
        Interlocked.Increment(ref _completed);
    }

    public ValueTask CompleteAsync(CancellationToken cancellationToken) => inner.CompleteAsync(cancellationToken);

    public ValueTask DisposeAsync() => inner.DisposeAsync();
}
