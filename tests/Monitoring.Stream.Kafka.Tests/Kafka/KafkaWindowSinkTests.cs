using System.Text;
using Apache.Arrow;
using Confluent.Kafka;
using Monitoring.Stream.Arrow;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Kafka.Aggregates;
using Monitoring.Stream.Kafka.Sink;
using Monitoring.Stream.Kafka.Tests.Support;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Statistics;
using static Monitoring.Stream.Kafka.Tests.Support.TestPipelines;

namespace Monitoring.Stream.Kafka.Tests.Kafka;

public class KafkaWindowSinkTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task WriteAsync_TwoInstances_ReaderMergesPartialsExactly()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("aggregates");
        var random = new Random(5);
        // Values near 1e9 with a small spread: the case where a naive variance loses every digit.
        double[] values = [.. Enumerable.Range(0, 4000).Select(_ => 1e9 + (random.Next(-1000, 1000) / 8.0))];
        var exact = new Dictionary<string, List<double>>();
        long delivered = 0;
        for (int instance = 0; instance < 2; instance++)
        {
            var sink = new KafkaWindowSink(new KafkaWindowSinkOptions { BootstrapServers = cluster.BootstrapServers, Topic = "aggregates" });
            await using MetricsPipeline pipeline = new(
                new MetricsPipelineOptions
                {
                    ShardCount = 2,
                    Instance = "engine-" + instance,
                    TimeProvider = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0)),
                },
                [sink]);
            pipeline.Start();
            using (PointWriter writer = pipeline.CreateWriter("test"))
            {
                for (int i = instance; i < values.Length; i += 2)
                {
                    Label[] labels = [new("series", (i / 2 % 8).ToString(System.Globalization.CultureInfo.InvariantCulture))];
                    Assert.Equal(RejectReason.None, writer.Write("big_values", labels, values[i], T0 + (i % 10_000)));
                    string key = AggregateRow.SeriesKeyOf("big_values", labels);
                    (exact.TryGetValue(key, out List<double>? list) ? list : exact[key] = []).Add(values[i]);
                }
            }

            await pipeline.StopAsync();
            SinkMetrics metrics = Assert.Single(pipeline.GetMetrics().Sinks);
            Assert.Equal(values.Length / 2, metrics.PointsWritten);
            Assert.Equal(0, sink.DeliveryFailures);
            delivered += sink.Delivered;
        }

        var merger = new AggregateMerger();
        var keys = new List<string>();
        using (var reader = new KafkaAggregateReader(cluster.BootstrapServers, "aggregates"))
        {
            using var expired = new CancellationTokenSource(s_timeout);
            for (long read = 0; read < delivered;)
            {
                Assert.False(expired.IsCancellationRequested, $"read {read} of {delivered} aggregate messages");
                using AggregateMessage? message = reader.Read(TimeSpan.FromMilliseconds(200));
                if (message is null)
                {
                    continue;
                }

                read++;
                RecordBatch batch = Assert.Single(message.Batches);
                Assert.Equal(WindowSchema.Version, batch.Schema.Metadata[WindowSchema.VersionKey]);
                Assert.Equal(message.Key, $"{batch.Schema.Metadata[WindowSchema.InstanceKey]}/{batch.Schema.Metadata[WindowSchema.ShardKey]}/{batch.Schema.Metadata[WindowSchema.WindowStartKey]}/{batch.Schema.Metadata[WindowSchema.SequenceKey]}");
                merger.AddRange(message.Rows);
                keys.Add(message.Key + ":" + message.Rows.Count);
            }
        }

        Assert.Equal(8, merger.Results.Count);
        foreach (MergedAggregate merged in merger.Results)
        {
            List<double> v = exact[AggregateRow.SeriesKeyOf(merged.Metric, merged.Labels)];
            Assert.True(merged.Partials == 2, $"{merged.Partials} partials of {merged.Metric}; delivered {delivered}; keys {string.Join(",", keys)}");
            Assert.Equal(v.Count, merged.Moments.Count);
            Assert.Equal(v.Min(), merged.Moments.Min);
            Assert.Equal(v.Max(), merged.Moments.Max);
            decimal exactSum = v.Sum(x => (decimal)x);
            Assert.Equal((double)exactSum, merged.Moments.Sum);
            decimal mean = exactSum / v.Count;
            double variance = (double)(v.Sum(x => ((decimal)x - mean) * ((decimal)x - mean)) / v.Count);
            Assert.Equal((double)mean, merged.Moments.Mean, 1e-9 * (double)mean);
            Assert.True(Math.Abs(merged.Moments.PopulationVariance - variance) <= 1e-9 * variance, $"variance {merged.Moments.PopulationVariance} vs {variance}");
            DdSketch sketch = merged.Sketch!;
            double[] sorted = [.. v.Order()];
            foreach (double q in (double[])[0.5, 0.9, 0.99])
            {
                double truth = sorted[(int)Math.Floor(q * (sorted.Length - 1))];
                Assert.True(Math.Abs(sketch.GetQuantile(q) - truth) <= sketch.RelativeAccuracy * Math.Abs(truth), $"q{q}: {sketch.GetQuantile(q)} vs {truth}");
            }
        }
    }

    [Fact]
    public async Task DisposeAsync_Twice_SecondIsANoOp()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("agg-dispose");
        var sink = new KafkaWindowSink(new KafkaWindowSinkOptions { BootstrapServers = cluster.BootstrapServers, Topic = "agg-dispose" });
        await sink.DisposeAsync();
        // A host and the pipeline may both dispose it: the second call must neither throw nor touch the closed producer.
        Exception? second = await Record.ExceptionAsync(async () => await sink.DisposeAsync());
        Assert.Null(second);
    }

    [Fact]
    public async Task WriteAsync_Message_CarriesKeyAndHeaders()
    {
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("agg-headers");
        var sink = new KafkaWindowSink(new KafkaWindowSinkOptions { BootstrapServers = cluster.BootstrapServers, Topic = "agg-headers" });
        await using (MetricsPipeline pipeline = Create(sink, instance: "engine-h"))
        {
            pipeline.Start();
            using (PointWriter writer = pipeline.CreateWriter("test"))
            {
                writer.Write("one_metric", [], 1.0, T0 + 1);
            }

            await pipeline.StopAsync();
        }

        ConsumeResult<byte[]?, byte[]?> result = Assert.Single(KafkaTestClient.ReadAll(cluster.BootstrapServers, "agg-headers", 1, s_timeout));
        string Header(string key) => Encoding.UTF8.GetString(result.Message.Headers.GetLastBytes(key));
        Assert.Equal("1", Header(AggregateHeaders.SchemaVersion));
        Assert.Equal(T0.ToString(System.Globalization.CultureInfo.InvariantCulture), Header(AggregateHeaders.WindowStart));
        Assert.Equal((T0 + 10_000).ToString(System.Globalization.CultureInfo.InvariantCulture), Header(AggregateHeaders.WindowEnd));
        Assert.Equal("engine-h", Header(AggregateHeaders.Instance));
        Assert.Equal("1", Header(AggregateHeaders.Points));
        Assert.Equal($"engine-h/{Header(AggregateHeaders.Shard)}/{T0}/{Header(AggregateHeaders.Sequence)}", Encoding.UTF8.GetString(result.Message.Key!));
    }

    [Fact]
    public async Task WriteAsync_UnreachableBrokers_CountsDeliveryFailuresAndPipelineCountsFailedBatch()
    {
        var sink = new KafkaWindowSink(new KafkaWindowSinkOptions { BootstrapServers = "127.0.0.1:1", Topic = "nowhere", DeliveryTimeout = TimeSpan.FromMilliseconds(500) });
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0));
        await using MetricsPipeline pipeline = Create(sink, time, sinkOptions: new SinkOptions { MaxAttempts = 2, InitialBackoff = TimeSpan.FromMilliseconds(10) });
        pipeline.Start();
        using (PointWriter writer = pipeline.CreateWriter("test"))
        {
            writer.Write("one_metric", [], 1.0, T0 + 1);
        }

        // The sink runner's backoff runs on the pipeline's clock: move it on while the stop waits for the retries.
        Task stop = pipeline.StopAsync();
        using var expired = new CancellationTokenSource(s_timeout);
        while (!stop.IsCompleted)
        {
            Assert.False(expired.IsCancellationRequested, "the stop did not finish");
            time.Advance(TimeSpan.FromMilliseconds(100));
            await Task.Delay(10);
        }

        await stop;
        SinkMetrics metrics = Assert.Single(pipeline.GetMetrics().Sinks);
        Assert.Equal((1L, 1L), (metrics.BatchesFailed, metrics.PointsFailed));
        Assert.Equal(2, sink.DeliveryFailures);
        Assert.Equal(0, sink.Delivered);
        Assert.NotNull(sink.LastError);
    }
}
