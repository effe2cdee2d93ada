using Monitoring.Stream.Ingest;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Kafka.Source;

/// <summary>
/// The one place where a partition's offsets meet the core's acknowledgements (ARCHITECTURE, data flow step 6):
/// checkpoint each message's offset on the partition's writer, read back the highest offset whose points are all
/// in windows every sink acknowledged, and close the writer's open windows on a revoke.
/// </summary>
/// <remarks>
/// Until the core's per-writer positions (<c>PointWriter.Checkpoint</c>, <c>AcknowledgedPosition</c>,
/// <c>WaitForAcknowledgedAsync</c>, <c>CloseOpenWindowsAsync</c>) are merged, this uses the one conservative
/// rule the public API allows: when the pipeline is quiescent — nothing buffered, queued or in open windows,
/// and every sink has acknowledged every emitted point — every checkpoint taken before is acknowledged.
/// That commits at idle times and after a graceful stop, never early; it cannot close windows early,
/// so a revoke commits only what is already acknowledged and the next owner re-reads the rest (duplicates, no loss).
/// </remarks>
internal sealed class PartitionPositions
{
    private readonly MetricsPipeline _pipeline;
    private long _checkpoint = -1;
    private long _acknowledged = -1;

    public PartitionPositions(MetricsPipeline pipeline, PointWriter writer)
    {
        _pipeline = pipeline;
        Writer = writer;
    }

    public PointWriter Writer { get; }

    /// <summary>The last offset checkpointed, or -1.</summary>
    public long Checkpointed => _checkpoint;

    /// <summary>Every point written before this call belongs to <paramref name="offset"/> or earlier.</summary>
    public void Checkpoint(long offset) => _checkpoint = offset;

    /// <summary>The highest checkpointed offset all of whose points are accounted for, or -1.</summary>
    public long AcknowledgedPosition => Volatile.Read(ref _acknowledged);

    /// <summary>Asks the core to close the open windows holding this partition's points; false when it cannot.</summary>
    public static bool CloseOpenWindows(IReadOnlyCollection<PartitionPositions> partitions, TimeSpan timeout)
    {
        _ = partitions;
        _ = timeout;
        return false;
    }

    /// <summary>Waits until every partition's last checkpoint is acknowledged, or the timeout; returns whether all were.</summary>
    public static bool WaitForAcknowledged(MetricsPipeline pipeline, IReadOnlyCollection<PartitionPositions> partitions, TimeSpan timeout)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (true)
        {
            Refresh(pipeline, partitions);
            if (partitions.All(p => p.AcknowledgedPosition >= p.Checkpointed))
            {
                return true;
            }

            if (Environment.TickCount64 >= deadline)
            {
                return false;
            }

            Thread.Sleep(20);
        }
    }

    /// <summary>Brings the acknowledged offsets of <paramref name="partitions"/> up to date.</summary>
    /// <remarks>Called on the thread that owns the writers: it flushes them.</remarks>
    public static void Refresh(MetricsPipeline pipeline, IReadOnlyCollection<PartitionPositions> partitions)
    {
        Span<long> taken = partitions.Count <= 256 ? stackalloc long[partitions.Count] : new long[partitions.Count];
        int i = 0;
        foreach (PartitionPositions p in partitions)
        {
            // The checkpoint is read before the flush and the snapshot, so every point it covers is counted in them.
            taken[i++] = p._checkpoint;
            p.Writer.Flush();
        }

        if (!IsQuiescent(pipeline.GetMetrics()))
        {
            return;
        }

        i = 0;
        foreach (PartitionPositions p in partitions)
        {
            Volatile.Write(ref p._acknowledged, Math.Max(p._acknowledged, taken[i++]));
        }
    }

    private static bool IsQuiescent(PipelineMetrics m) =>
        m.Pending == 0 && m.Queued == 0 && m.OpenWindowPoints == 0
        && m.Sinks.All(s => s.QueueDepth == 0 && s.PointsWritten == m.EmittedPoints);
}
