using Monitoring.Stream.Kafka.Aggregates;
using Monitoring.Stream.Sinks;

namespace Monitoring.Stream.Kafka.Tests.Support;

/// <summary>A sink that keeps every row it receives, read through the Arrow columns as a consumer would.</summary>
internal sealed class RowSink : IWindowSink
{
    private readonly Lock _gate = new();
    private readonly List<AggregateRow> _rows = [];

    public string Name => "rows";

    public IReadOnlyList<AggregateRow> Rows
    {
        get
        {
            lock (_gate)
            {
                return [.. _rows];
            }
        }
    }

    public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
    {
        List<AggregateRow> rows = AggregateRows.Read(batch.RecordBatch);
        lock (_gate)
        {
            _rows.AddRange(rows);
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
