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

    /// <summary>Disposes the record batches.</summary>
    public void Dispose()
    {
        foreach (RecordBatch batch in Batches)
        {
            batch.Dispose();
        }
    }
}
