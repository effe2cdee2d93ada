using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Statistics;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Pipeline;

public class MetricsPipelineAccountingTests
{
    private const long T0 = 1_800_000_000_000;
    private const long Hour = 3_600_000;

    private static Label[] LatencyLabels(int k) => [new("route", "/r" + k), new("zone", "z" + (k % 3))];

    private static Label[] QueueLabels(int k) => [new("queue", "q" + k)];

    private sealed record Planned(string Metric, Label[] Labels, double Value, long Timestamp, RejectReason Expected, bool Late);

    /// <summary>The points producer <paramref name="p"/> writes: mostly valid, some late, some invalid.</summary>
    private static List<Planned> Plan(int p, int n)
    {
        var random = new Random(1000 + p);
        var plan = new List<Planned>(n);
        for (int i = 0; i < n; i++)
        {
            bool latency = i % 5 != 0;
            int k = random.Next(latency ? 200 : 50);
            string metric = latency ? "req_latency_seconds" : "queue_depth";
            Label[] labels = latency ? LatencyLabels(k) : QueueLabels(k);
            double value = latency ? 0.02 * Math.Exp(0.7 * Distributions.Gaussian(random)) : random.Next(-50, 1000);
            // Unique event times, so "last value" has one right answer whatever the interleaving.
            long ts = T0 + Hour + 1000 + (((long)i * 4) + p) * 7;
            if (i % 97 == 0)
            {
                plan.Add(new Planned(metric, labels, value, T0 + ((i % 1000) * 1000L), RejectReason.None, Late: true));
            }
            else if (i % 101 == 0)
            {
                plan.Add(new Planned(metric, labels, double.NaN, ts, RejectReason.NotANumber, false));
            }
            else if (i % 103 == 0)
            {
                plan.Add(new Planned(metric, labels, value, T0 + (3 * Hour), RejectReason.TimestampOutOfRange, false));
            }
            else if (i % 107 == 0)
            {
                plan.Add(new Planned("bad-name", labels, value, ts, RejectReason.InvalidMetricName, false));
            }
            else
            {
                plan.Add(new Planned(metric, labels, value, ts, RejectReason.None, false));
            }
        }

        return plan;
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public async Task Wait_ManyProducers_EveryPointAccountedAndStatisticsEqualReference(int shards)
    {
        const int Producers = 4;
        const int PerProducer = 20_000;
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0 + (2 * Hour)));
        var sink = new CollectingSink();
        var options = new MetricsPipelineOptions
        {
            ShardCount = shards,
            WindowSize = TimeSpan.FromSeconds(10),
            AllowedLateness = TimeSpan.FromHours(1),
            MaxPointAge = TimeSpan.FromHours(3),
            BatchSize = 128,
            ShardQueueBatches = 8,
            TimeProvider = time,
        };
        await using var pipeline = new MetricsPipeline(options, [sink]);

        // Register every series up front, in a fixed order, so ids (and shards) are deterministic.
        for (int k = 0; k < 200; k++)
        {
            pipeline.Registry.GetOrAdd("req_latency_seconds", LatencyLabels(k));
        }

        for (int k = 0; k < 50; k++)
        {
            pipeline.Registry.GetOrAdd("queue_depth", QueueLabels(k));
        }

        pipeline.Start();

        // One anchor point per shard two hours ahead: every shard's watermark is then T0 + 1 h, so
        // the planned late points are late whatever the interleaving, and no other point is.
        var reference = new Dictionary<(string Key, long Window), (RunningMoments Moments, DdSketch Sketch)>();
        void Reference(string metric, Label[] labels, double value, long ts)
        {
            long window = ts - (ts % 10_000);
            var key = (metric + LabelSet.Create(labels), window);
            if (!reference.TryGetValue(key, out var state))
            {
                state = (new RunningMoments(), new DdSketch());
            }

            state.Moments.Add(value, ts);
            state.Sketch.Add(value);
            reference[key] = state;
        }

        using (PointWriter anchor = pipeline.CreateWriter("anchor"))
        {
            for (int id = 0; id < shards; id++)
            {
                var descriptor = pipeline.Registry.GetDescriptor(new SeriesId(id));
                Assert.Equal(RejectReason.None, anchor.Write(descriptor.Id, 1.0, T0 + (2 * Hour)));
                Reference(descriptor.Metric, [.. descriptor.Labels.AsSpan()], 1.0, T0 + (2 * Hour));
            }
        }

        await pipeline.DrainAsync();

        List<Planned>[] plans = [.. Enumerable.Range(0, Producers).Select(p => Plan(p, PerProducer))];
        await Task.WhenAll(Enumerable.Range(0, Producers).Select(p => Task.Run(() =>
        {
            using PointWriter writer = pipeline.CreateWriter("producer-" + p, BackpressureMode.Wait);
            foreach (Planned point in plans[p])
            {
                // Half the producers resolve per call, half hold ids as a bound SDK handle would.
                RejectReason reason = p % 2 == 0 || point.Expected == RejectReason.InvalidMetricName
                    ? writer.Write(point.Metric, point.Labels, point.Value, point.Timestamp)
                    : writer.Write(pipeline.Registry.GetOrAdd(point.Metric, point.Labels), point.Value, point.Timestamp);
                Assert.Equal(point.Expected, reason);
            }
        })));

        await pipeline.StopAsync();

        foreach (Planned point in plans.SelectMany(p => p).Where(p => p.Expected == RejectReason.None && !p.Late))
        {
            Reference(point.Metric, point.Labels, point.Value, point.Timestamp);
        }

        PipelineMetrics m = pipeline.GetMetrics();
        long planned = (Producers * PerProducer) + shards;
        long expectedLate = plans.SelectMany(p => p).Count(p => p.Late);
        long emitted = sink.Rows.Sum(r => r.Count);
        Assert.Equal(planned, m.Offered);
        Assert.Equal(m.Offered, m.Accepted + m.Rejected + m.Dropped);
        Assert.Equal(0, m.Pending);
        Assert.Equal(0, m.Dropped);
        Assert.Equal(m.Accepted, emitted + m.Late);
        Assert.Equal(emitted, m.EmittedPoints);
        Assert.Equal(0, m.OpenWindowPoints);
        Assert.Equal(expectedLate, m.Late);
        Assert.Equal(plans.SelectMany(p => p).Count(p => p.Late && p.Metric == "queue_depth"), m.LateByMetric.GetValueOrDefault("queue_depth"));
        foreach (RejectReason reason in new[] { RejectReason.NotANumber, RejectReason.TimestampOutOfRange, RejectReason.InvalidMetricName })
        {
            Assert.Equal(plans.SelectMany(p => p).Count(p => p.Expected == reason), m.RejectedByReason[reason]);
        }

        Assert.True(sink.Completed);
        Assert.Equal(reference.Count, sink.Rows.Count);
        foreach (WindowRow row in sink.Rows)
        {
            (RunningMoments expected, DdSketch sketch) = reference[(row.Key, row.WindowStartMs)];
            Assert.Equal(row.WindowStartMs + 10_000, row.WindowEndMs);
            Assert.Equal(expected.Count, row.Count);
            Assert.Equal(expected.Min, row.Min);
            Assert.Equal(expected.Max, row.Max);
            Assert.Equal(expected.Last, row.Last);
            Assert.Equal(expected.Sum, row.Sum, 1e-9 * Math.Max(1, Math.Abs(expected.Sum)));
            Assert.Equal(expected.Mean, row.Mean, 1e-9 * Math.Max(1, Math.Abs(expected.Mean)));
            Assert.Equal(expected.M2, row.M2, 1e-9 * Math.Max(1, expected.M2));
            Assert.Equal(expected.PopulationVariance, row.Variance, 1e-9 * Math.Max(1, expected.PopulationVariance));
            // Sketch bins do not depend on arrival order: the emitted sketch is identical.
            Assert.True(sketch.ContentEquals(row.Sketch));
            Assert.Equal(sketch.GetQuantile(0.99), row.Quantiles[3]);
        }
    }

    [Fact]
    public async Task DropNewest_FullShards_DropsAreCountedAndEverythingElseArrives()
    {
        const int Producers = 4;
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        var sink = new CollectingSink();
        var options = new MetricsPipelineOptions
        {
            ShardCount = 2,
            BatchSize = 64,
            ShardQueueBatches = 2,
            TimeProvider = time,
        };
        await using var pipeline = new MetricsPipeline(options, [sink]);

        // Shards are not started yet, so their channels fill after two batches and the rest must drop.
        Parallel.For(0, Producers, p =>
        {
            using PointWriter writer = pipeline.CreateWriter("sdk-" + p, BackpressureMode.DropNewest);
            var random = new Random(p);
            for (int i = 0; i < 5_000; i++)
            {
                double value = i % 50 == 0 ? double.PositiveInfinity : random.NextDouble();
                writer.Write("requests", [new Label("shard_hint", (i % 16).ToString(System.Globalization.CultureInfo.InvariantCulture))], value, T0 - random.Next(60_000));
            }
        });

        pipeline.Start();
        await pipeline.StopAsync();

        PipelineMetrics m = pipeline.GetMetrics();
        long emitted = sink.Rows.Sum(r => r.Count);
        Assert.Equal(Producers * 5_000, m.Offered);
        Assert.Equal(m.Offered, m.Accepted + m.Rejected + m.Dropped);
        Assert.Equal(Producers * 100, m.RejectedByReason[RejectReason.Infinity]);
        Assert.True(m.DroppedByReason[DropReason.QueueFull] > 0);
        Assert.Equal(2 * 2 * 64, m.Accepted);
        Assert.Equal(m.Accepted, emitted + m.Late);
        Assert.Equal(Producers, m.Sources.Count);
        Assert.Equal(m.Dropped, m.Sources.Sum(s => s.DroppedQueueFull));
        Assert.All(m.Sources, s => Assert.Equal(s.Offered, s.Accepted + s.Rejected + s.Dropped));
    }

    [Fact]
    public async Task DropNewest_RunningUnderLoad_InvariantsHold()
    {
        var sink = new CollectingSink();
        var options = new MetricsPipelineOptions { ShardCount = 2, BatchSize = 32, ShardQueueBatches = 1 };
        await using var pipeline = new MetricsPipeline(options, [sink]);
        pipeline.Start();
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

        Parallel.For(0, 4, p =>
        {
            using PointWriter writer = pipeline.CreateWriter("sdk", BackpressureMode.DropNewest);
            for (int i = 0; i < 50_000; i++)
            {
                writer.Write("load", [new Label("k", (i % 100).ToString(System.Globalization.CultureInfo.InvariantCulture))], i, now + (i % 1000));
            }
        });

        await pipeline.StopAsync();
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(200_000, m.Offered);
        Assert.Equal(m.Offered, m.Accepted + m.Rejected + m.Dropped);
        Assert.Equal(m.Accepted, sink.Rows.Sum(r => r.Count) + m.Late);
        Assert.Single(m.Sources);
    }

    [Fact]
    public async Task WriteAfterStop_RefusedAsWriterClosedAndCounted()
    {
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = 1 }, [sink]);
        pipeline.Start();
        PointWriter writer = pipeline.CreateWriter("late-producer");
        await pipeline.StopAsync();

        Assert.Equal(RejectReason.WriterClosed, writer.Write("m", [], 1.0, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()));
        writer.Flush();

        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(1, m.RejectedByReason[RejectReason.WriterClosed]);
        Assert.Equal(0, m.Pending);
        Assert.Equal(m.Offered, m.Accepted + m.Rejected + m.Dropped);
    }
}

public class MetricsPipelineShardingTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(7)]
    public async Task AnyShardCount_EverySeriesArrivesInItsOwnShard(int shards)
    {
        var sink = new Support.CollectingSink();
        long now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await using (var pipeline = new MetricsPipeline(new MetricsPipelineOptions { ShardCount = shards }, [sink]))
        {
            pipeline.Start();
            using (PointWriter writer = pipeline.CreateWriter("test"))
            {
                for (int i = 0; i < 100; i++)
                {
                    Assert.Equal(RejectReason.None, writer.Write("m", [new Label("i", i.ToString(System.Globalization.CultureInfo.InvariantCulture))], i, now));
                }
            }

            await pipeline.StopAsync();
            foreach (Support.WindowRow row in sink.Rows)
            {
                int id = pipeline.Registry.GetOrAdd("m", row.Labels).Value;
                Assert.Equal(id % shards, row.Shard);
                Assert.Equal(int.Parse(row.Labels.GetValue("i")!, System.Globalization.CultureInfo.InvariantCulture), row.Last);
            }
        }

        Assert.Equal(100, sink.Rows.Count);
    }
}
