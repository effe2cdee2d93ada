using Apache.Arrow;

namespace Monitoring.Stream.Sinks;

/// <summary>
/// One closed window of one shard, as Arrow, handed to every sink. The batch is shared: a sink must not
/// dispose it or keep it after <see cref="IWindowSink.WriteAsync"/> returns; the pipeline disposes it
/// once every sink is done.
/// </summary>
public sealed class WindowBatch
{
    private readonly IDisposable? _lease;
    private int _pendingSinks;

    internal WindowBatch(RecordBatch batch, long windowStartUnixMs, long windowEndUnixMs, int shard, string instance, long points, IDisposable? lease = null)
    {
        RecordBatch = batch;
        _lease = lease;
        WindowStartUnixMs = windowStartUnixMs;
        WindowEndUnixMs = windowEndUnixMs;
        Shard = shard;
        Instance = instance;
        Points = points;
    }

    /// <summary>One row per series with data in the window.</summary>
    public RecordBatch RecordBatch { get; }

    /// <summary>Inclusive window start, ms since the Unix epoch.</summary>
    public long WindowStartUnixMs { get; }

    /// <summary>Exclusive window end, ms since the Unix epoch.</summary>
    public long WindowEndUnixMs { get; }

    /// <summary>The shard that aggregated the window.</summary>
    public int Shard { get; }

    /// <summary>The engine instance that produced it.</summary>
    public string Instance { get; }

    /// <summary>Points aggregated into the window (the sum of the count column).</summary>
    public long Points { get; }

    internal void Retain(int sinks) => _pendingSinks = sinks;

    internal void Release()
    {
        if (Interlocked.Decrement(ref _pendingSinks) == 0)
        {
            RecordBatch.Dispose();
            _lease?.Dispose();
        }
    }
}
