using Monitoring.Stream.Ingest;

namespace Monitoring.Stream.Kafka.Source;

/// <summary>
/// The one place where a partition's offsets meet the core's acknowledgements (docs/event-time.md): each
/// message's offset is checkpointed on the partition's writer; the committed offset is one past the highest
/// checkpoint whose points are all accounted for; a revoke closes the writer's open windows first.
/// </summary>
internal sealed class PartitionPositions(PointWriter writer)
{
    public PointWriter Writer { get; } = writer;

    /// <summary>The last offset checkpointed, or -1.</summary>
    public long Checkpointed { get; private set; } = -1;

    /// <summary>Every point written before this call belongs to <paramref name="offset"/> or earlier.</summary>
    public void Checkpoint(long offset)
    {
        Writer.Checkpoint(offset);
        Checkpointed = offset;
    }

    /// <summary>The highest checkpointed offset all of whose points are accounted for, or -1.</summary>
    public long AcknowledgedPosition => Writer.AcknowledgedPosition;

    /// <summary>
    /// Has the shards emit now the open windows holding these partitions' points; returns per shard the highest
    /// sequence emitted by the closes (every batch of that shard above it holds none of the points written before),
    /// or null when they were not all done within <paramref name="timeout"/>.
    /// </summary>
    /// <remarks>Called on the thread that owns the writers.</remarks>
    public static long[]? CloseOpenWindows(IReadOnlyCollection<PartitionPositions> partitions, TimeSpan timeout)
    {
        using var expired = new CancellationTokenSource(timeout);
        Task<IReadOnlyList<long>>[] closing = [.. partitions.Select(p => p.Writer.CloseOpenWindowsAsync(expired.Token).AsTask())];
        try
        {
            Task.WaitAll(closing, expired.Token);
        }
        catch (OperationCanceledException)
        {
            return null;
        }
        catch (AggregateException)
        {
            // Canceled, or the pipeline stopping (its channels closed): not a cut either way.
            return null;
        }

        long[] through = new long[closing.Length == 0 ? 0 : closing[0].Result.Count];
        foreach (Task<IReadOnlyList<long>> close in closing)
        {
            for (int shard = 0; shard < through.Length; shard++)
            {
                through[shard] = Math.Max(through[shard], close.Result[shard]);
            }
        }

        return through;
    }

    /// <summary>Waits until every partition's last checkpoint is acknowledged; returns whether all were within <paramref name="timeout"/>.</summary>
    public static bool WaitForAcknowledged(IReadOnlyCollection<PartitionPositions> partitions, TimeSpan timeout)
    {
        using var expired = new CancellationTokenSource(timeout);
        try
        {
            Task.WaitAll([.. partitions.Select(p => p.Writer.WaitForAcknowledgedAsync(p.Checkpointed, expired.Token))], expired.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (AggregateException e) when (e.InnerExceptions.All(x => x is OperationCanceledException))
        {
            return false;
        }
    }

    /// <summary>
    /// Has the shards emit now the open windows holding these partitions' points, then waits until every
    /// partition's last checkpoint is acknowledged; returns whether all were within <paramref name="timeout"/>.
    /// </summary>
    /// <remarks>Called on the thread that owns the writers.</remarks>
    public static bool CloseAndWaitForAcknowledged(IReadOnlyCollection<PartitionPositions> partitions, TimeSpan timeout)
    {
        using var expired = new CancellationTokenSource(timeout);
        try
        {
            Task[] closing = [.. partitions.Select(p => p.Writer.CloseOpenWindowsAsync(expired.Token).AsTask())];
            try
            {
                Task.WaitAll(closing, expired.Token);
            }
            catch (AggregateException e) when (e.InnerExceptions.All(x => x is InvalidOperationException))
            {
                // The pipeline is stopping or stopped (its channels are closed): a graceful stop emits
                // every window by itself, so the acknowledgements below still come.
            }

            Task[] acknowledged = [.. partitions.Select(p => p.Writer.WaitForAcknowledgedAsync(p.Checkpointed, expired.Token))];
            Task.WaitAll(acknowledged, expired.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (AggregateException e) when (e.InnerExceptions.All(x => x is OperationCanceledException))
        {
            return false;
        }
    }
}
