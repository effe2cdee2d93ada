using System.Runtime.InteropServices;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Ingest;

/// <summary>
/// What one source (a <see cref="PointWriter"/>) offered and what became of it, and how far the shards
/// have acknowledged its batches. The offered/accepted/rejected/dropped counters are written only by the
/// source's own thread and read by anyone: plain 64-bit fields, which x64 reads without tearing. The
/// shards write the late count and the acknowledged sequences.
/// </summary>
internal sealed class SourceCounters
{
    public readonly long[] Rejected = new long[(int)Enum.GetValues<RejectReason>().Max() + 1];
    public readonly long[] Dropped = new long[(int)Enum.GetValues<DropReason>().Max() + 1];

    /// <summary>Per shard: the highest batch sequence whose points are all accounted for (see <see cref="PointWriter.Checkpoint"/>).</summary>
    public readonly long[] AckedSeq;

    /// <summary>Per shard: the batches the source handed over in all; valid once <see cref="Retired"/> is set.</summary>
    public readonly long[] FinalSeq;

    /// <summary>
    /// Per shard: the sequence of the last batch handed over, published before the hand-over (so a shard that
    /// has processed less knows points are on their way and the source is not idle).
    /// </summary>
    public readonly long[] SentSeq;

    // PERF: the per-point counter sits alone on its cache line, so readers polling the totals never
    // pull the line away from the writing thread's neighbours.
    private Padded _offered;
    private TaskCompletionSource _acked = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public SourceCounters(string name, int index, int shardCount, long createdAtMs)
    {
        Name = name;
        Index = index;
        CreatedAtMs = createdAtMs;
        AckedSeq = new long[shardCount];
        FinalSeq = new long[shardCount];
        SentSeq = new long[shardCount];
    }

    public string Name { get; }

    /// <summary>Position of the source in the pipeline's list, used by shards to index their per-source state.</summary>
    public int Index { get; }

    /// <summary>The engine's clock (ms) when the source was created: until it sends anything, it is alive since then.</summary>
    public long CreatedAtMs { get; }

    public long Accepted;

    /// <summary>Points of this source that reached a shard after their window had closed (written by shards).</summary>
    public long Late;

    /// <summary>Writes refused because the writer was used from a thread that does not own it (interlocked).</summary>
    public long Misuse;

    /// <summary>Set once the writer is disposed and <see cref="FinalSeq"/> holds its final counts.</summary>
    public volatile bool Retired;

    /// <summary>
    /// Points sit in the writer's buffers, not yet handed to a shard (set when a batch is started, cleared by a
    /// flush that leaves none): such a source is not idle, whatever its last batch's age, so a tick that
    /// comes before the engine's flush of a quiet writer (after a stall) does not make its points late.
    /// </summary>
    public volatile bool Buffered;

    /// <summary>
    /// Flushes that left nothing buffered (written by the source's flush, read by shards): once it has moved on
    /// from its value at some moment, every point the source had written before that moment is handed over
    /// or counted as dropped. A shard waits for that before it retires an unlisted series (see
    /// <see cref="Series.SeriesRegistry.Unlist"/>).
    /// </summary>
    public long ClearFlushes;

    public ref long Offered => ref _offered.Value;

    /// <summary>Completes when a shard next acknowledges more of this source's batches.</summary>
    public Task AckChanged => Volatile.Read(ref _acked).Task;

    /// <summary>Called by a shard after it raised <see cref="AckedSeq"/>: wakes whoever waits on <see cref="AckChanged"/>.</summary>
    public void SignalAcked() => Interlocked.Exchange(ref _acked, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    [StructLayout(LayoutKind.Explicit, Size = 128)]
    private struct Padded
    {
        [FieldOffset(64)]
        public long Value;
    }
}
