using System.Threading.Channels;
using System.Threading.Tasks.Sources;

namespace Monitoring.Stream.Ingest;

/// <summary>
/// How an idle shard is woken: at once for anything that must not wait (a flush, a tick, a barrier, a stop,
/// a look at the metrics), but for full batches only once a few are queued.
/// </summary>
/// <remarks>
/// PERF: a shard that keeps up with its writers empties its queue after every batch, and waking it (a
/// thread-pool work item, the worker's spin before it sleeps again, a futex) cost about a tenth of the
/// process's CPU when batches came every half millisecond (labels resolved per call at 100,000 series; the
/// Kafka source's shards spent a fifth of their time there). Waking it for every
/// <see cref="LazyBatches"/>-th full batch instead divides that by as much. A full batch waits at most until
/// its writer's next flush (every <see cref="Pipeline.MetricsPipelineOptions.ProducerFlushInterval"/> while it writes)
/// or the next tick. Every write to a shard's queue rings this bell after the write.
/// </remarks>
internal sealed class ShardBell : IValueTaskSource<bool>
{
    /// <summary>Full batches queued before a lazy ring wakes the shard.</summary>
    public const int LazyBatches = 8;

    private readonly ChannelReader<PointBatch> _reader;
    private readonly int _lazyAt;
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private int _parked;
    private int _urgent;

    public ShardBell(ChannelReader<PointBatch> reader, int capacity)
    {
        _reader = reader;
        _lazyAt = Math.Clamp(capacity / 4, 1, LazyBatches);
    }

    /// <summary>Whether the shard is asleep on this bell.</summary>
    public bool IsParked => Volatile.Read(ref _parked) != 0;

    /// <summary>Called by a writer after writing to the queue; <paramref name="urgent"/> for anything but a full batch of points.</summary>
    public void Ring(bool urgent)
    {
        if (urgent)
        {
            // Read by a shard about to park (see WaitAsync): it then does not sleep on this write.
            Interlocked.Exchange(ref _urgent, 1);
        }

        if (Volatile.Read(ref _parked) == 0 || (!urgent && _reader.Count < _lazyAt))
        {
            return;
        }

        if (Interlocked.Exchange(ref _parked, 0) == 1)
        {
            _core.SetResult(true);
        }
    }

    /// <summary>Wakes a parked shard that has batches waiting (someone looks at the metrics: show them current).</summary>
    public void Nudge()
    {
        if (Volatile.Read(ref _parked) != 0 && _reader.Count > 0)
        {
            Ring(urgent: true);
        }
    }

    /// <summary>
    /// The shard's wait once its queue is empty: completes when a ring wakes it. Clears the urgent mark first,
    /// so a later urgent write is seen by the next wait.
    /// </summary>
    public ValueTask<bool> WaitAsync()
    {
        _core.Reset();
        // Both sides write their flag, fence, then read the other's: a write that misses the parked flag is
        // seen by the checks below, and one that sees it wakes the shard.
        Interlocked.Exchange(ref _parked, 1);
        if (Volatile.Read(ref _urgent) != 0 || _reader.Count >= _lazyAt || _reader.Completion.IsCompleted)
        {
            if (Interlocked.Exchange(ref _parked, 0) == 1)
            {
                Volatile.Write(ref _urgent, 0);
                return new ValueTask<bool>(true);
            }

            // A writer took the flag first and completes the wait.
        }

        return new ValueTask<bool>(this, _core.Version);
    }

    /// <summary>Clears the urgent mark before the shard drains its queue (what it drains needs no more waking).</summary>
    public void BeforeDrain() => Volatile.Write(ref _urgent, 0);

    bool IValueTaskSource<bool>.GetResult(short token)
    {
        bool result = _core.GetResult(token);
        Volatile.Write(ref _urgent, 0);
        return result;
    }

    ValueTaskSourceStatus IValueTaskSource<bool>.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource<bool>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
