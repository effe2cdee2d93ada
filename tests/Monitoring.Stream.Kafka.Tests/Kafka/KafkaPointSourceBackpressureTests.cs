using Monitoring.Stream.Kafka.Aggregates;
using Monitoring.Stream.Kafka.Source;
using Monitoring.Stream.Kafka.Tests.Support;
using Monitoring.Stream.Kafka.WireFormat;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using static Monitoring.Stream.Kafka.Tests.Support.TestPipelines;

namespace Monitoring.Stream.Kafka.Tests.Kafka;

/// <summary>
/// <see cref="KafkaPointSource"/>'s pause and resume under a slow sink (a class of its own beside
/// <c>KafkaPointSourceTests</c>, which another change owns at the moment).
/// </summary>
public class KafkaPointSourceBackpressureTests
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    /// <summary>Takes 20 ms per window batch (real time), so the shards wait for it under the Block policy.</summary>
    private sealed class SlowSink : IWindowSink
    {
        private long _points;

        public string Name => "slow";

        public long Points => Interlocked.Read(ref _points);

        public async ValueTask WriteAsync(WindowBatch batch, CancellationToken cancellationToken)
        {
            long points = AggregateRows.Read(batch.RecordBatch).Sum(r => r.Count);
            await Task.Delay(20, cancellationToken);
            Interlocked.Add(ref _points, points);
        }

        public ValueTask CompleteAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    [Fact]
    public async Task Start_SlowSinkTinyShardQueues_PausesResumesAndLosesNothingWithBoundedBuffers()
    {
        const int Messages = 200, PointsPerMessage = 500, QueueBatches = 4, BatchSize = 1024, Partitions = 4;
        using var cluster = new KafkaMockCluster();
        cluster.EnsureTopic("pressure");

        // Message m on partition m % 4, in window m / 4 (10 s windows from 50 minutes before the engine's clock):
        // every partition's event time moves on steadily, so windows close all along the run and the slow sink is
        // fed. Every partition must carry messages: a partition's writer holds the watermark from its creation,
        // and this engine's fake clock never lets a silent one go idle.
        long start = T0 - (50 * 60_000);
        KafkaTestClient.Produce(cluster.BootstrapServers, "pressure", Enumerable.Range(0, Messages).Select(m =>
        {
            var encoder = new PointBatchEncoder();
            for (int i = 0; i < PointsPerMessage; i++)
            {
                encoder.Add("bytes_total", [new("k", (i % 20).ToString(System.Globalization.CultureInfo.InvariantCulture))], i, start + ((m / 4) * 10_000L) + ((m % 4) * 2_000L) + i);
            }

            return (m % Partitions, encoder.ToArray());
        }));

        var sink = new SlowSink();
        await using MetricsPipeline pipeline = new(
            new MetricsPipelineOptions
            {
                ShardCount = 2,
                ShardQueueBatches = QueueBatches,
                BatchSize = BatchSize,
                TimeProvider = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0)),
                Instance = "pressure",
            },
            [sink],
            new SinkOptions { QueueCapacity = 1, QueuePolicy = SinkQueuePolicy.Block });
        pipeline.Start();
        var options = new KafkaPointSourceOptions
        {
            BootstrapServers = cluster.BootstrapServers,
            Topic = "pressure",
            GroupId = "g-pressure",
            PrefetchKilobytes = 256,
            RevokeTimeout = TimeSpan.FromSeconds(20),
        };
        await using var source = new KafkaPointSource(pipeline, options);

        // Watch the run: what the engine holds beyond Kafka's prefetch is what is offered and not yet taken by a
        // shard: at most the shard queues, one batch in each shard's hands, and one partial batch per writer.
        long maxPending = 0, maxDepth = 0;
        bool sawPaused = false, sawResumedAfterPause = false;
        using var watching = new CancellationTokenSource();
        Task watcher = Task.Run(async () =>
        {
            while (!watching.IsCancellationRequested)
            {
                PipelineMetrics m = pipeline.GetMetrics();
                maxPending = Math.Max(maxPending, m.Pending);
                maxDepth = Math.Max(maxDepth, m.ShardQueueDepth.Max());
                bool paused = source.GetMetrics().Paused;
                sawResumedAfterPause |= sawPaused && !paused;
                sawPaused |= paused;
                await Task.Delay(2);
            }
        });

        source.Start();
        await Eventually.True(() => source.GetMetrics().Messages == Messages, s_timeout, () => source.GetMetrics().ToString());

        // Once the shards have drained, the source resumes by itself.
        await Eventually.True(() => !source.GetMetrics().Paused && pipeline.GetMetrics().Pending == 0, s_timeout, () => source.GetMetrics().ToString());
        await source.StopAsync().WaitAsync(s_timeout);
        await pipeline.StopAsync().WaitAsync(s_timeout);
        await watching.CancelAsync();
        await watcher.WaitAsync(s_timeout);

        KafkaSourceMetrics metrics = source.GetMetrics();
        Assert.True(metrics.Pauses > 0, metrics.ToString());
        Assert.True(sawPaused && sawResumedAfterPause, $"paused seen {sawPaused}, resumed after it {sawResumedAfterPause}");
        PipelineMetrics end = pipeline.GetMetrics();
        Assert.True(end.Late == 0 && (long)Messages * PointsPerMessage == sink.Points, $"sink {sink.Points}; offered {end.Offered} accepted {end.Accepted} late {end.Late} rejected {end.Rejected} dropped {end.Dropped} emitted {end.EmittedPoints} open {end.OpenWindowPoints} faulted {end.FaultedPoints} stale {end.StalePoints} {string.Join(",", end.RejectedByReason)} {string.Join(",", end.DroppedByReason)}");
        Assert.Equal(0, metrics.RevokeTimeouts);
        Assert.InRange(maxDepth, 1, QueueBatches);
        long bound = (2L * (QueueBatches + 1) * BatchSize) + (Partitions * BatchSize);
        Assert.True(maxPending <= bound, $"{maxPending} points pending at most, bound {bound}");
    }
}
