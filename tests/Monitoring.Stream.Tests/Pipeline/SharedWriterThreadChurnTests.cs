using Monitoring.Stream.Ingest;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Pipeline;

/// <summary>
/// Many threads that each record a few points through a shared writer and then go quiet (or end): the engine's timer
/// hands their buffers over, and a shard queue full of those small batches keeps the rest buffered for its next pass.
/// </summary>
public class SharedWriterThreadChurnTests
{
    [Fact]
    public async Task ThousandsOfQuietThreads_TheirBuffersFlushedByTheTimer_NothingDroppedOnAFullShardQueue()
    {
        const int Threads = 800;
        var sink = new CollectingSink();
        // 64 batches a shard: fewer than the threads with a point buffered when the timer passes.
        await using var pipeline = new MetricsPipeline(
            new MetricsPipelineOptions { ShardCount = 2, ShardQueueBatches = 64, WindowSize = TimeSpan.FromSeconds(1), AllowedLateness = TimeSpan.Zero, SourceIdleTimeout = TimeSpan.FromSeconds(1) },
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
}
