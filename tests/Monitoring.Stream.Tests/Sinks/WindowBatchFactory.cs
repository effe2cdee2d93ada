using System.Globalization;
using Apache.Arrow;
using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Sinks;

/// <summary>
/// Realistic window batches for sink tests: the points go through a real <see cref="MetricsPipeline"/>
/// (resolve, shard, aggregate, close, Arrow), and a sink retains every emitted batch so that it outlives
/// <see cref="IWindowSink.WriteAsync"/> and can be handed to the sink under test as often as a test likes.
/// Only <see cref="WithColumn"/> needs the core's internals (to build a batch around damaged columns).
/// </summary>
public static class WindowBatchFactory
{
    /// <summary>Start of the first window of <see cref="CreateAsync"/>, ms since the epoch (a Friday in 2027).</summary>
    public const long T0 = 1_800_000_000_000;

    /// <summary>Window size of the pipeline that builds the batches, in ms.</summary>
    public const long WindowMs = 10_000;

    /// <summary>The metric of every row of <see cref="CreateAsync"/>.</summary>
    public const string Metric = "contract_request_duration_seconds";

    /// <summary>
    /// One batch per window for <paramref name="windows"/> consecutive windows from <see cref="T0"/>, each with
    /// <paramref name="series"/> series of the metric <see cref="Metric"/> (label <c>route</c>) and a few points each.
    /// </summary>
    public static Task<IReadOnlyList<WindowBatch>> CreateAsync(int windows, int series) =>
        FromPipelineAsync(Produce(windows, series), T0 + ((windows + 1) * WindowMs));

    /// <summary>
    /// Runs the points of <see cref="CreateAsync"/> through a real pipeline into <paramref name="sink"/> (the
    /// pipeline completes and disposes it, and lets each batch go once every sink is done with it); returns
    /// the batches as a second sink retained them and the pipeline's metrics after the stop.
    /// </summary>
    public static async Task<(IReadOnlyList<WindowBatch> Batches, PipelineMetrics Metrics)> RunPipelineAsync(IWindowSink sink, int windows, int series)
    {
        ArgumentNullException.ThrowIfNull(sink);
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0 + ((windows + 1) * WindowMs)));
        var keeper = new KeepingSink();
        PipelineMetrics metrics;
        await using (var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 1, TimeProvider = time, AllowedLateness = TimeSpan.Zero }, [keeper, sink]))
        {
            pipeline.Start();
            using (PointWriter writer = pipeline.CreateWriter("batch-factory"))
            {
                Produce(windows, series)(writer);
            }

            await pipeline.StopAsync();
            metrics = pipeline.GetMetrics();
        }

        return (keeper.Batches, metrics);
    }

    private static Action<PointWriter> Produce(int windows, int series) =>
        writer =>
        {
            var random = new Random(windows * 7919 + series);
            for (int w = 0; w < windows; w++)
            {
                for (int s = 0; s < series; s++)
                {
                    Label[] labels = [new("route", "/r" + s.ToString(CultureInfo.InvariantCulture))];
                    for (int p = 0; p < 3; p++)
                    {
                        writer.Write(Metric, labels, 0.001 + random.NextDouble(), T0 + (w * WindowMs) + p);
                    }
                }
            }
        };

    /// <summary>
    /// Runs a one-shard pipeline whose clock stands at <paramref name="nowUnixMs"/> (no allowed lateness), lets
    /// <paramref name="produce"/> write points, stops it and returns every batch (retained), in window order.
    /// </summary>
    public static async Task<IReadOnlyList<WindowBatch>> FromPipelineAsync(Action<PointWriter> produce, long nowUnixMs)
    {
        ArgumentNullException.ThrowIfNull(produce);
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(nowUnixMs));
        var sink = new KeepingSink();
        await using (var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 1, TimeProvider = time, AllowedLateness = TimeSpan.Zero }, [sink]))
        {
            pipeline.Start();
            using (PointWriter writer = pipeline.CreateWriter("batch-factory"))
            {
                produce(writer);
            }

            await pipeline.StopAsync();
        }

        return sink.Batches;
    }

    /// <summary>
    /// A batch that stays readable after <see cref="IWindowSink.WriteAsync"/> returns: the pipeline's
    /// <see cref="WindowBatch.Retain"/> (shared memory, no copy), never disposed here since the
    /// factory's batches live as long as the tests that use them.
    /// </summary>
    public static WindowBatch Keep(WindowBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return batch.Retain();
    }

    /// <summary>The same batch with the column <paramref name="column"/> replaced (to build damaged rows).</summary>
    public static WindowBatch WithColumn(WindowBatch batch, string column, IArrowArray replacement)
    {
        ArgumentNullException.ThrowIfNull(batch);
        RecordBatch rb = batch.RecordBatch;
        int index = rb.Schema.GetFieldIndex(column);
        Assert.True(index >= 0, $"no column {column}");
        IArrowArray[] arrays = [.. Enumerable.Range(0, rb.ColumnCount).Select(i => i == index ? replacement : rb.Column(i))];
        return new WindowBatch(new RecordBatch(rb.Schema, arrays, rb.Length), batch.WindowStartUnixMs, batch.WindowEndUnixMs, batch.Shard, batch.Instance, batch.Sequence, batch.Points);
    }

    /// <summary>The <c>float64</c> column <paramref name="column"/> of <paramref name="batch"/> with row <paramref name="row"/> set to <paramref name="value"/>.</summary>
    public static DoubleArray DoublesWith(WindowBatch batch, string column, int row, double value)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var source = (DoubleArray)batch.RecordBatch.Column(column);
        var builder = new DoubleArray.Builder().Reserve(source.Length);
        for (int i = 0; i < source.Length; i++)
        {
            builder.Append(i == row ? value : source.GetValue(i)!.Value);
        }

        return builder.Build();
    }

    /// <summary>The <c>sketch</c> column of <paramref name="batch"/> with row <paramref name="row"/> set to <paramref name="bytes"/>.</summary>
    public static BinaryArray SketchesWith(WindowBatch batch, int row, byte[] bytes)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var source = (BinaryArray)batch.RecordBatch.Column("sketch");
        var builder = new BinaryArray.Builder();
        for (int i = 0; i < source.Length; i++)
        {
            if (i == row)
            {
                builder.Append(bytes.AsSpan());
            }
            else if (source.IsNull(i))
            {
                builder.AppendNull();
            }
            else
            {
                builder.Append(source.GetBytes(i));
            }
        }

        return builder.Build();
    }

    /// <summary>The points per series (key: metric followed by its labels) in <paramref name="batches"/>, record batches of the window schema.</summary>
    public static IReadOnlyDictionary<string, long> PointsBySeries(IEnumerable<RecordBatch> batches) =>
        batches.SelectMany(b => CollectingSink.Read(b, 0))
            .GroupBy(r => r.Key, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.Sum(r => r.Count), StringComparer.Ordinal);

    /// <summary>The points per series in <paramref name="batches"/>.</summary>
    public static IReadOnlyDictionary<string, long> PointsBySeries(IEnumerable<WindowBatch> batches) =>
        PointsBySeries(batches.Select(b => b.RecordBatch));

    private sealed class KeepingSink : IWindowSink
    {
        private readonly Lock _gate = new();
        private readonly List<WindowBatch> _batches = [];

        public string Name => "keep";

        public IReadOnlyList<WindowBatch> Batches
        {
            get
            {
                lock (_gate)
                {
                    return [.. _batches.OrderBy(b => b.WindowStartUnixMs).ThenBy(b => b.Shard)];
                }
            }
        }

        public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
        {
            WindowBatch kept = Keep(batch);
            lock (_gate)
            {
                _batches.Add(kept);
            }

            return ValueTask.CompletedTask;
        }

        public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
