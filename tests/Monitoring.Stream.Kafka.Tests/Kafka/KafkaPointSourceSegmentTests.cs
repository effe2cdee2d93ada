using System.Collections.Concurrent;
using System.Globalization;
using Monitoring.Stream.Kafka.Aggregates;
using Monitoring.Stream.Kafka.Sink;
using Monitoring.Stream.Kafka.Source;
using Monitoring.Stream.Kafka.Tests.Support;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using static Monitoring.Stream.Kafka.Tests.Support.TestPipelines;

namespace Monitoring.Stream.Kafka.Tests.Kafka;

/// <summary>
/// Commit segments (docs/kafka.md, "Segments"): the source cuts its partitions, emitting the open windows, and commits
/// only at cuts, so no aggregate message holds points from both sides of a committed offset.
/// </summary>
public class KafkaPointSourceSegmentTests
{
    private const int Partitions = 4;
    private const int PointsPerMessage = 20;
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    /// <summary>A message whose every point has the value <paramref name="offset"/>: a row's min and max tell which offsets its points came from.</summary>
    private static byte[] Message(int partition, long offset)
    {
        var encoder = new PointBatchEncoder();
        for (int i = 0; i < PointsPerMessage; i++)
        {
            encoder.Add("segment_total", [new("partition", partition.ToString(CultureInfo.InvariantCulture)), new("k", (i % 5).ToString(CultureInfo.InvariantCulture))], offset, T0 + (i * 10));
        }

        return encoder.ToArray();
    }

    private static KafkaPointSourceOptions Options(KafkaMockCluster cluster, string topic, string group, TimeSpan segments)
    {
        KafkaPointSourceOptions options = KafkaPointSourceTests.Options(cluster, topic, group);
        options.CommitInterval = TimeSpan.FromMilliseconds(50);
        options.SegmentInterval = segments;
        return options;
    }

    [Fact]
    public async Task Cuts_WhileConsuming_EveryBatchWhollyBelowOrAtOrAboveEveryCommitAndItsRangesHoldItsPoints()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("segments");
        KafkaPointSource? source = null;
        var sink = new HeaderSink(batch => source!.DescribeSourceOffsets(batch));
        await using MetricsPipeline pipeline = Create(sink);
        pipeline.Start();
        source = new KafkaPointSource(pipeline, Options(cluster, "segments", "g-seg", TimeSpan.FromMilliseconds(150)));
        source.Start();
        await source.FirstAssignment.WaitAsync(s_timeout);

        // Every commit the source makes, seen from outside while it runs.
        var commits = new ConcurrentBag<(int Partition, long Offset)>();
        using var watching = new CancellationTokenSource();
        Task watcher = Task.Run(async () =>
        {
            while (!watching.IsCancellationRequested)
            {
                foreach ((int p, long o) in source.GetMetrics().CommittedOffsets)
                {
                    commits.Add((p, o));
                }

                await Task.Delay(5);
            }
        });

        // Eight rounds, one message a partition each, 100 ms apart: cuts fall between and inside rounds. The fake clock
        // stands still, so no window closes by time: every batch is a cut's emission.
        const int Rounds = 8;
        for (int round = 0; round < Rounds; round++)
        {
            KafkaTestClient.Produce(cluster.BootstrapServers, "segments", Enumerable.Range(0, Partitions).Select(p => (p, Message(p, round))));
            await Task.Delay(100);
        }

        await Eventually.True(() => source.GetMetrics().Messages == Rounds * Partitions, s_timeout, () => source.GetMetrics().ToString());
        await source.StopAsync();
        await watching.CancelAsync();
        await watcher;
        await pipeline.StopAsync();

        KafkaSourceMetrics metrics = source.GetMetrics();
        Assert.True(metrics.Cuts >= 3, metrics.ToString());
        Assert.Equal(0, metrics.CutTimeouts);
        Assert.Equal(Enumerable.Repeat((long)Rounds, Partitions), KafkaTestClient.Committed(cluster.BootstrapServers, "g-seg", "segments", Partitions));

        // Each point exactly once, over more messages than windows: the cuts split the one window into partial batches.
        List<(IReadOnlyList<SourceOffsetRange> Ranges, List<AggregateRow> Rows)> batches = sink.Batches;
        Assert.Equal(Rounds * Partitions * PointsPerMessage, batches.Sum(b => b.Rows.Sum(r => r.Count)));
        Assert.True(batches.Count > 2, $"{batches.Count} batches");
        var committed = commits.Distinct().ToList();
        Assert.True(committed.Count >= Partitions * 2, $"only {committed.Count} commits seen: {string.Join(" ", committed)}");

        foreach ((IReadOnlyList<SourceOffsetRange> ranges, List<AggregateRow> rows) in batches)
        {
            foreach (AggregateRow row in rows)
            {
                // The header's range of the row's partition holds the offsets of its points (value = offset).
                int partition = int.Parse(row.Labels.Single(l => l.Name == "partition").Value, CultureInfo.InvariantCulture);
                SourceOffsetRange range = Assert.Single(ranges, r => r.Partition == partition);
                Assert.True(row.Min >= range.Low && row.Max <= range.High, $"{row.SeriesKey}: offsets {row.Min}..{row.Max} outside the header's {range.Low}-{range.High}");
            }

            // No batch straddles a commit: its range of each partition lies wholly below or wholly at or above it.
            foreach ((int partition, long offset) in committed)
            {
                foreach (SourceOffsetRange range in ranges.Where(r => r.Partition == partition && r.Low <= r.High))
                {
                    Assert.True(range.High < offset || range.Low >= offset, $"partition {partition}: batch range {range.Low}-{range.High} straddles the commit at {offset}");
                }
            }
        }
    }

    [Fact]
    public async Task Commit_SegmentsOff_CommitsAsAcknowledgedAndCutsNothing()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("no-segments");
        KafkaTestClient.Produce(cluster.BootstrapServers, "no-segments", Enumerable.Range(0, Partitions).Select(p => (p, Message(p, 0))));
        var sink = new RowSink();
        await using MetricsPipeline pipeline = Create(sink);
        pipeline.Start();
        await using var source = new KafkaPointSource(pipeline, Options(cluster, "no-segments", "g-off", TimeSpan.Zero));
        source.Start();
        await Eventually.True(() => source.GetMetrics().Messages == Partitions, s_timeout, () => source.GetMetrics().ToString());

        // The fake clock stands still: nothing closes until the stop closes the windows and commits.
        await Task.Delay(300);
        Assert.Empty(sink.Rows);
        await source.StopAsync();
        Assert.Equal(0, source.GetMetrics().Cuts);
        Assert.Equal(Partitions * PointsPerMessage, sink.Rows.Sum(r => r.Count));
        Assert.Equal(Enumerable.Repeat(1L, Partitions), KafkaTestClient.Committed(cluster.BootstrapServers, "g-off", "no-segments", Partitions));
        await pipeline.StopAsync();
    }

    [Fact]
    public async Task Options_NegativeSegmentInterval_Refused()
    {
        await using MetricsPipeline pipeline = Create(new RowSink());
        var options = new KafkaPointSourceOptions { SegmentInterval = TimeSpan.FromSeconds(-1) };
        ArgumentOutOfRangeException e = Assert.Throws<ArgumentOutOfRangeException>(() => new KafkaPointSource(pipeline, options));
        Assert.Equal(nameof(KafkaPointSourceOptions.SegmentInterval), e.ParamName);
    }

    /// <summary>A sink that keeps each batch's rows with the header text the Kafka sink would write for it.</summary>
    private sealed class HeaderSink(Func<WindowBatch, string> describe) : IWindowSink
    {
        private readonly Lock _gate = new();
        private readonly List<(IReadOnlyList<SourceOffsetRange>, List<AggregateRow>)> _batches = [];

        public string Name => "headers";

        public List<(IReadOnlyList<SourceOffsetRange> Ranges, List<AggregateRow> Rows)> Batches
        {
            get
            {
                lock (_gate)
                {
                    return [.. _batches];
                }
            }
        }

        public ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
        {
            IReadOnlyList<SourceOffsetRange> ranges = SourceOffsetRange.Parse(describe(batch));
            List<AggregateRow> rows = AggregateRows.Read(batch.RecordBatch);
            lock (_gate)
            {
                _batches.Add((ranges, rows));
            }

            return ValueTask.CompletedTask;
        }

        public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
