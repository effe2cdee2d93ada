using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Pipeline;

/// <summary>
/// Many threads that each record a few points through a shared writer and then go quiet (or end): the engine's timer
/// hands their buffers over, and a shard queue full of those small batches keeps the rest buffered for its next pass;
/// a DropNewest writer's batch kept for a shard that stays full holds windows no longer than SourceIdleTimeout.
/// </summary>
public class SharedWriterThreadChurnTests
{
    [Fact]
    public async Task ThousandsOfQuietThreads_TheirBuffersFlushedByTheTimer_NothingDroppedOnAFullShardQueue()
    {
        const int Threads = 800;
        var sink = new CollectingSink();
        // 64 batches a shard: fewer than the threads with a point buffered when the timer passes. Each pass (every
        // ProducerFlushInterval, 200 ms) gets about a queue's worth in; the rest are kept for up to SourceIdleTimeout
        // (10 s by default): 800 threads take about 13 passes.
        await using var pipeline = new MetricsPipeline(
            new MetricsPipelineOptions { ShardCount = 2, ShardQueueBatches = 64, WindowSize = TimeSpan.FromSeconds(1), AllowedLateness = TimeSpan.Zero },
            [sink]);
        pipeline.Start();
        SharedPointWriter shared = pipeline.CreateSharedWriter("churn"); // DropNewest, the SDK's mode
        for (int i = 0; i < Threads; i++)
        {
            var thread = new Thread(() => shared.Write("churn_total", [], 1.0));
            thread.Start();
            thread.Join();
        }

        // No flush by the caller: only the timer hands the dead threads' points over.
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (pipeline.GetMetrics().Accepted + pipeline.GetMetrics().Dropped < Threads && waited.Elapsed < TimeSpan.FromSeconds(60))
        {
            await Task.Delay(50);
        }

        PipelineMetrics m = pipeline.GetMetrics();
        Assert.True(m.Dropped == 0 && m.Accepted == Threads,
            $"offered {m.Offered}, accepted {m.Accepted}, dropped {m.Dropped} ({string.Join(", ", m.DroppedByReason.Where(d => d.Value > 0).Select(d => $"{d.Key} {d.Value}"))}) after {waited.Elapsed.TotalSeconds:F1} s");
        await pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(Threads, sink.Rows.Sum(r => r.Count));
    }

    [Fact]
    public async Task QuietDropNewestWriter_ItsShardStaysFull_KeptAtMostSourceIdleTimeoutThenDroppedCounted_OtherShardsWindowsMoveOn()
    {
        // Found by review: a kept batch is on its way, so its writer holds the watermark on every shard; kept for as long
        // as its shard stayed full, it stopped windows closing everywhere.
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(
            new MetricsPipelineOptions
            {
                ShardCount = 2, ShardQueueBatches = 4, WindowSize = TimeSpan.FromSeconds(1), AllowedLateness = TimeSpan.Zero,
                SourceIdleTimeout = TimeSpan.FromSeconds(1), ProducerFlushInterval = TimeSpan.FromMilliseconds(50), TickInterval = TimeSpan.FromMilliseconds(100),
            },
            [sink]);
        SeriesId onFull = default, onOther = default;
        for (int i = 0; onFull == default || onOther == default; i++)
        {
            SeriesId id = pipeline.Registry.GetOrAdd("m" + i);
            if (id.Value % 2 == 0 && onFull == default)
            {
                onFull = id;
            }
            else if (id.Value % 2 == 1 && onOther == default)
            {
                onOther = id;
            }
        }

        pipeline.Start();
        // Shard 0 stalls on a barrier whose completion blocks its thread, then its queue is filled.
        using var release = new ManualResetEventSlim(false);
        var stall = new TaskCompletionSource();
        _ = stall.Task.ContinueWith(_ => release.Wait(TimeSpan.FromSeconds(60)), TaskContinuationOptions.ExecuteSynchronously);
        Assert.True(pipeline.ShardWriters[0].TryWrite(new PointBatch(0) { Kind = BatchKind.Barrier, Barrier = stall }));
        await Task.Delay(200);
        while (pipeline.ShardWriters[0].TryWrite(new PointBatch(0) { Kind = BatchKind.Barrier, Barrier = new TaskCompletionSource() }))
        {
        }

        try
        {
            var quietThread = new Thread(() => pipeline.CreateWriter("quiet", BackpressureMode.DropNewest).Write(onFull, 1.0));
            quietThread.Start();
            quietThread.Join();

            PointWriter other = pipeline.CreateWriter("other", BackpressureMode.DropNewest);
            var waited = System.Diagnostics.Stopwatch.StartNew();
            long lag = long.MaxValue;
            while (waited.Elapsed < TimeSpan.FromSeconds(30))
            {
                other.Write(onOther, 1.0);
                other.Flush();
                await Task.Delay(100);
                PipelineMetrics now = pipeline.GetMetrics();
                lag = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - now.Watermarks[1];
                if (waited.Elapsed > TimeSpan.FromSeconds(1) && lag < 3_000 && now.DroppedByReason.GetValueOrDefault(DropReason.QueueFull) == 1)
                {
                    break;
                }
            }

            PipelineMetrics m = pipeline.GetMetrics();
            Assert.True(lag < 3_000 && m.DroppedByReason.GetValueOrDefault(DropReason.QueueFull) == 1,
                $"after {waited.Elapsed.TotalSeconds:F1} s with shard 0 full: shard 1's watermark {lag} ms behind the clock, dropped {m.Dropped}, pending {m.Pending}");
        }
        finally
        {
            release.Set();
        }

        await pipeline.StopAsync().WaitAsync(TimeSpan.FromSeconds(30));
        PipelineMetrics end = pipeline.GetMetrics();
        Assert.Equal(end.Offered, end.Accepted + end.Dropped + end.Rejected);
        Assert.Equal(end.Accepted, sink.Rows.Sum(r => r.Count) + end.Late);
    }
}
