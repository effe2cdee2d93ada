using System.Threading.Channels;

namespace Monitoring.Stream.Ingest;

/// <summary>
/// Where writers in <see cref="BackpressureMode.Wait"/> wait for room in a full shard queue: asleep, woken by
/// the shard once it has worked the queue down to half, instead of spinning and yielding the whole time.
/// </summary>
/// <remarks>
/// PERF: a writer that outpaces its shards used to spin for room (mostly <c>sched_yield</c>), which cost CPU
/// per point on every busy core without moving a point: about a tenth of a bound point's CPU at 1,000 series
/// with one producer. Waking at half the queue leaves the shard a long backlog while the writer wakes, so the
/// shard never runs dry for it. A wait is bounded (<see cref="MaxSleepMs"/>), so a writer also notices a
/// stop or a dead shard on its own, and a missed wake-up could only delay, never hang, a writer.
/// </remarks>
internal sealed class ShardSpace
{
    /// <summary>The longest one sleep lasts before the writer looks again by itself.</summary>
    public const int MaxSleepMs = 5;

    private readonly object _gate = new();
    private readonly int _wakeAt;
    private int _waiters;

    public ShardSpace(int capacity) => _wakeAt = Math.Max(0, capacity / 2);

    /// <summary>Writers asleep or about to sleep.</summary>
    public int Waiters => Volatile.Read(ref _waiters);

    /// <summary>
    /// Called by the shard after each batch it took from its queue: wakes the sleeping writers once the
    /// queue holds half its capacity or less. Costs one read of a field while nobody waits.
    /// </summary>
    public void OnTaken(ChannelReader<PointBatch> reader)
    {
        if (Volatile.Read(ref _waiters) != 0 && reader.Count <= _wakeAt)
        {
            lock (_gate)
            {
                Monitor.PulseAll(_gate);
            }
        }
    }

    /// <summary>Wakes every sleeping writer now (a stop, a dead shard).</summary>
    public void WakeAll()
    {
        lock (_gate)
        {
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>
    /// Writes <paramref name="batch"/> to <paramref name="writer"/> if there is room, or sleeps until the
    /// shard wakes the writers or <see cref="MaxSleepMs"/> passes; true when written. After a sleep it returns
    /// false without trying again: the caller stamps the batch with the time of its next try (PointWriter.WaitAndWrite).
    /// </summary>
    public bool TryWriteOrSleep(ChannelWriter<PointBatch> writer, PointBatch batch)
    {
        lock (_gate)
        {
            // Counted before the write is tried: a shard that takes a batch after this failed write sees the
            // count (the channel's own lock orders the two), so its wake-up cannot fall between try and sleep.
            Interlocked.Increment(ref _waiters);
            try
            {
                if (writer.TryWrite(batch))
                {
                    return true;
                }

                Monitor.Wait(_gate, MaxSleepMs);
                return false;
            }
            finally
            {
                Interlocked.Decrement(ref _waiters);
            }
        }
    }
}
