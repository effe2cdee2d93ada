using Apache.Arrow;
using Monitoring.Stream.Kafka.Sink;

namespace Monitoring.Stream.Kafka.Aggregates;

/// <summary>One message of the aggregate topic: its Arrow record batches, their rows, and where it was read.</summary>
public sealed class AggregateMessage : IDisposable
{
    internal AggregateMessage(string key, int partition, long offset, IReadOnlyList<RecordBatch> batches, IReadOnlyList<SourceOffsetRange> sourceOffsets)
    {
        SourceOffsets = sourceOffsets;
        Key = key;
        Partition = partition;
        Offset = offset;
        Batches = batches;
        Rows = [.. batches.SelectMany(AggregateRows.Read)];
    }

    /// <summary>The message key: <c>instance/shard/window start ms/sequence</c>.</summary>
    public string Key { get; }

    /// <summary>The ranges of the points topic its points can have come from (header <see cref="AggregateHeaders.SourceOffsets"/>; empty when absent).</summary>
    public IReadOnlyList<SourceOffsetRange> SourceOffsets { get; }

    /// <summary>The partition it was read from.</summary>
    public int Partition { get; }

    /// <summary>Its offset.</summary>
    public long Offset { get; }

    /// <summary>The record batches of the message's Arrow stream (one, as the engine writes them).</summary>
    public IReadOnlyList<RecordBatch> Batches { get; }

    /// <summary>The rows of every batch as typed values.</summary>
    public IReadOnlyList<AggregateRow> Rows { get; }

    /// <summary>
    /// Whether the message holds only points that the next owner of their partitions read again, given the offsets
    /// <paramref name="committed"/> per partition of <paramref name="pointsTopic"/> once the writing instance was gone
    /// (a crash; the group's committed offsets, where the next owner starts): every range of that topic starts at or
    /// above its partition's committed offset. Such a message is a duplicate: drop it. With commit segments
    /// (docs/kafka.md, "Segments") every other message of that instance lies wholly below the committed offsets:
    /// keep it. False when the message names no range of the topic (its origin is unknown: keep it).
    /// </summary>
    public bool IsReadAgainAfter(string pointsTopic, IReadOnlyDictionary<int, long> committed)
    {
        ArgumentNullException.ThrowIfNull(pointsTopic);
        ArgumentNullException.ThrowIfNull(committed);
        bool any = false;
        foreach (SourceOffsetRange range in SourceOffsets)
        {
            if (range.Topic != pointsTopic)
            {
                continue;
            }

            any = true;
            if (range.Low < committed.GetValueOrDefault(range.Partition, 0))
            {
                return false;
            }
        }

        return any;
    }

    /// <summary>Disposes the record batches.</summary>
    public void Dispose()
    {
        foreach (RecordBatch batch in Batches)
        {
            batch.Dispose();
        }
    }
}
