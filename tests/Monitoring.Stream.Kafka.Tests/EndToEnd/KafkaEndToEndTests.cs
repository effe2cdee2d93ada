using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Kafka.Aggregates;
using Monitoring.Stream.Kafka.Sink;
using Monitoring.Stream.Kafka.Source;
using Monitoring.Stream.Kafka.Tests.Support;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Statistics;
using static Monitoring.Stream.Kafka.Tests.Support.TestPipelines;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Kafka.Tests.EndToEnd;

/// <summary>
/// kafkajs produces points (tests/interop/produce-points.mjs, written from docs/wire-format.md); two engine
/// instances in one group aggregate them; the aggregate reader and arrow-js read the results back.
/// </summary>
public class KafkaEndToEndTests
{
    // The size: 1,000,000 points over 10,000 series, 1,000 points per message (about 25 s here).
    private const int Series = 10000;
    private const int PointsPerSeries = 100;
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(120);

    private static double Value(long s, long i) => ((i * 7919 + s * 104729) % 10007) / 16.0 - 100;

    private static long Timestamp(long i) => T0 + (i * 37 % 20000);

    [Fact]
    public async Task NodeProducer_TwoInstancesInOneGroup_ReaderAndArrowJsSeeExactStatistics()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("e2e.points");
        cluster.EnsureTopic("e2e.aggregates");
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0 + 20_000));
        KafkaWindowSink[] sinks = [.. Enumerable.Range(0, 2).Select(_ => new KafkaWindowSink(new KafkaWindowSinkOptions { BootstrapServers = cluster.BootstrapServers, Topic = "e2e.aggregates" }))];
        MetricsPipeline[] engines = [.. Enumerable.Range(0, 2).Select(k => new MetricsPipeline(
            new MetricsPipelineOptions { ShardCount = 2, TimeProvider = time, Instance = "engine-" + k }, [sinks[k]]))];
        KafkaPointSource[] sources = [.. engines.Select(e =>
        {
            var options = new KafkaPointSourceOptions { BootstrapServers = cluster.BootstrapServers, Topic = "e2e.points", GroupId = "e2e", CommitInterval = TimeSpan.FromMilliseconds(200) };
            options.ClientSettings["heartbeat.interval.ms"] = "100";
            return new KafkaPointSource(e, options);
        })];
        try
        {
            foreach (MetricsPipeline e in engines)
            {
                e.Start();
            }

            foreach (KafkaPointSource s in sources)
            {
                s.Start();
            }

            // Both members own partitions before anything is produced, so no rebalance happens mid-stream here.
            await Eventually.True(() => sources.Sum(s => s.GetMetrics().AssignedPartitions) == 4 && sources.All(s => s.GetMetrics().AssignedPartitions > 0), s_timeout, () => string.Join(" / ", sources.Select(s => s.GetMetrics())));
            string produced = await NodeRunner.RunAsync("produce-points.mjs", cluster.BootstrapServers, "e2e.points", $"{Series}", $"{PointsPerSeries}", $"{T0}", "1000");
            using JsonDocument report = JsonDocument.Parse(produced);
            long messages = report.RootElement.GetProperty("messages").GetInt64();
            Assert.Equal(Series * PointsPerSeries, report.RootElement.GetProperty("points").GetInt64());
            await Eventually.True(() => sources.Sum(s => s.GetMetrics().Points) >= Series * PointsPerSeries, s_timeout, () => string.Join(" / ", sources.Select(s => s.GetMetrics())));
            foreach (KafkaPointSource s in sources)
            {
                await s.StopAsync();
            }

            foreach (MetricsPipeline e in engines)
            {
                await e.StopAsync();
            }

            Assert.Equal(messages, sources.Sum(s => s.GetMetrics().Messages));
            Assert.All(sources, s => Assert.Empty(s.GetMetrics().DeadLettered));
            Assert.All(sources, s => Assert.Equal(0, s.GetMetrics().CloseTimeouts));
        }
        finally
        {
            foreach (KafkaPointSource s in sources)
            {
                await s.DisposeAsync();
            }

            foreach (MetricsPipeline e in engines)
            {
                await e.DisposeAsync();
            }
        }

        long delivered = sinks.Sum(s => s.Delivered);
        var exact = new Dictionary<(string, long), List<double>>();
        for (long s = 0; s < Series; s++)
        {
            string key = AggregateRow.SeriesKeyOf("interop_latency_seconds", [new("group", "g" + (s % 16)), new("series", "s" + s)]);
            for (long i = 0; i < PointsPerSeries; i++)
            {
                long window = Timestamp(i) - (Timestamp(i) % 10_000);
                (exact.TryGetValue((key, window), out List<double>? list) ? list : exact[(key, window)] = []).Add(Value(s, i));
            }
        }

        var merger = new AggregateMerger();
        using (var reader = new KafkaAggregateReader(cluster.BootstrapServers, "e2e.aggregates"))
        {
            using var expired = new CancellationTokenSource(s_timeout);
            for (long read = 0; read < delivered;)
            {
                Assert.False(expired.IsCancellationRequested, $"read {read} of {delivered}");
                using AggregateMessage? message = reader.Read(TimeSpan.FromMilliseconds(200));
                if (message is not null)
                {
                    merger.AddRange(message.Rows);
                    read++;
                }
            }
        }

        Assert.Equal(exact.Count, merger.Results.Count);
        foreach (MergedAggregate m in merger.Results)
        {
            List<double> v = exact[(AggregateRow.SeriesKeyOf(m.Metric, m.Labels), m.WindowStartUnixMs)];
            RunningMoments r = m.Moments;
            Assert.Equal((v.Count, v.Sum(), v.Min(), v.Max()), (r.Count, r.Sum, r.Min, r.Max));
            double mean = v.Average();
            double variance = v.Sum(x => (x - mean) * (x - mean)) / v.Count;
            Assert.True(Math.Abs(r.Mean - mean) <= 1e-9 * Math.Abs(mean), $"mean {r.Mean} vs {mean}");
            Assert.True(Math.Abs(r.PopulationVariance - variance) <= 1e-9 * variance, $"variance {r.PopulationVariance} vs {variance}");
            double[] sorted = [.. v.Order()];
            foreach (double q in (double[])[0.5, 0.9, 0.99])
            {
                double truth = sorted[(int)Math.Floor(q * (sorted.Length - 1))];
                double estimate = m.Sketch!.GetQuantile(q);
                Assert.True(Math.Abs(estimate - truth) <= m.Sketch.RelativeAccuracy * Math.Abs(truth) + 1e-12, $"q{q}: {estimate} vs {truth}");
            }
        }

        // An independent reader: kafkajs and apache-arrow for JavaScript.
        string js = await NodeRunner.RunAsync("read-aggregates.mjs", cluster.BootstrapServers, "e2e.aggregates", $"{delivered}");
        using JsonDocument fromJs = JsonDocument.Parse(js);
        int rows = 0;
        foreach (JsonProperty p in fromJs.RootElement.EnumerateObject())
        {
            int at = p.Name.LastIndexOf('@');
            List<double> v = exact[(p.Name[..at], long.Parse(p.Name[(at + 1)..], System.Globalization.CultureInfo.InvariantCulture))];
            Assert.Equal(v.Count, p.Value.GetProperty("count").GetInt64());
            Assert.Equal(v.Sum(), p.Value.GetProperty("sum").GetDouble());
            Assert.Equal(v.Min(), p.Value.GetProperty("min").GetDouble());
            Assert.Equal(v.Max(), p.Value.GetProperty("max").GetDouble());
            rows++;
        }

        Assert.Equal(exact.Count, rows);
    }
}
