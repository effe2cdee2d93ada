using System.Diagnostics;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>A per-thread writer used from two threads at once is refused and counted; the shared writer is safe from any thread.</summary>
public class WriterMisuseTests
{
    private static SeriesId[] Register(MetricsPipeline pipeline, int n) =>
        [.. Enumerable.Range(0, n).Select(k => pipeline.Registry.GetOrAdd("misuse_total", [new Label("k", "k" + k)]))];

    [Fact]
    public void ThreadStack_OnLinux_EachThreadsRangeHoldsItsOwnLocalsAndNotAnotherThreads()
    {
        // The writer's gate recognises its thread by its stack range: each range must contain the thread's
        // own stack and not another thread's.
        if (!OperatingSystem.IsLinux())
        {
            Assert.False(ThreadStack.TryGetCurrent(out _, out _));
            return;
        }

        (nuint Low, nuint Size, nuint Local) Probe()
        {
            Assert.True(ThreadStack.TryGetCurrent(out nuint low, out nuint size));
            nuint local = Local();
            return (low, size, local);
        }

        (nuint Low, nuint Size, nuint Local) here = Probe();
        (nuint Low, nuint Size, nuint Local) other = default;
        var thread = new Thread(() => other = Probe());
        thread.Start();
        thread.Join();

        Assert.InRange(here.Local - here.Low, 0u, here.Size - 1);
        Assert.InRange(other.Local - other.Low, 0u, other.Size - 1);
        Assert.False(other.Local - here.Low < here.Size, "another thread's stack lies in this thread's range");
        Assert.False(here.Local - other.Low < other.Size, "this thread's stack lies in another thread's range");
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static nuint Local()
    {
        Span<byte> probe = stackalloc byte[1];
        // The address as a number, without an unsafe context: the distance from null.
        return (nuint)System.Runtime.CompilerServices.Unsafe.ByteOffset(ref System.Runtime.CompilerServices.Unsafe.NullRef<byte>(), ref System.Runtime.InteropServices.MemoryMarshal.GetReference(probe));
    }

    [Fact]
    public async Task Write_TwoThreadsHammerOneWriter_MisuseRefusedCountedAndNoShardDies()
    {
        var time = Scenario.Clock(Scenario.T0 + 30_000);
        var sink = new ProbeSink("count");
        await using var pipeline = new MetricsPipeline(Scenario.Options(time, shards: 2), [sink]);
        SeriesId[] ids = Register(pipeline, 16);
        pipeline.Start();
        PointWriter writer = pipeline.CreateWriter("shared-by-mistake");

        long[] ok = new long[2];
        long[] refused = new long[2];
        var unexpected = new Exception?[2];
        using var start = new Barrier(2);
        Thread[] threads = [.. Enumerable.Range(0, 2).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            var clock = Stopwatch.StartNew();
            for (int i = 0; ; i++)
            {
                // At least 200,000 writes each, then on until one misuse was seen (bounded: failing below).
                if (i >= 200_000 && (Interlocked.Read(ref refused[0]) + Interlocked.Read(ref refused[1]) > 0 || clock.Elapsed > Signals.Bound))
                {
                    return;
                }

                try
                {
                    RejectReason reason = writer.Write(ids[i & 15], 1.0, Scenario.T0 + 10_000 + (i % 1000));
                    if (reason != RejectReason.None)
                    {
                        unexpected[t] = new InvalidDataException($"write refused: {reason}");
                        return;
                    }

                    ok[t]++;
                }
                catch (InvalidOperationException)
                {
                    Interlocked.Increment(ref refused[t]);
                }
                catch (Exception e)
                {
                    unexpected[t] = e;
                    return;
                }
            }
        }) { IsBackground = true })];
        foreach (Thread thread in threads)
        {
            thread.Start();
        }

        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(Signals.Bound * 2), "a writing thread did not finish (a writer waiting for ever?)");
        }

        Assert.Null(unexpected[0]);
        Assert.Null(unexpected[1]);
        long misuse = refused[0] + refused[1];
        Assert.True(misuse > 0, "two threads wrote through one PointWriter at once and no misuse was detected");

        // The writer still works for one thread at a time, and the engine took everything that was not refused.
        writer.Flush();
        await pipeline.DrainAsync().Within("drain");
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(PipelineState.Running, m.State);
        Assert.Equal(0, m.Faults);
        Assert.Null(m.LastFault);
        Assert.Equal(misuse, m.WriterMisuse);
        Assert.Equal(ok[0] + ok[1], m.Offered);
        Assert.Equal(ok[0] + ok[1], m.Accepted);
        Identities.AssertSettled(m);

        // The engine keeps running: a fresh writer's points arrive.
        using (PointWriter after = pipeline.CreateWriter("after"))
        {
            for (int i = 0; i < 10; i++)
            {
                Assert.Equal(RejectReason.None, after.Write(ids[i], 2.0, Scenario.T0 + 10_500));
            }
        }

        writer.Dispose();
        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(ok[0] + ok[1] + 10, m.Accepted);
        Assert.Equal(0, m.Late);
        Assert.Equal(m.Accepted, m.EmittedPoints);
        Assert.Equal(m.EmittedPoints, sink.PointsRead);
    }

    [Fact]
    public async Task Write_HandedBetweenThreadsBetweenWrites_NoMisuseExactTotals()
    {
        var time = Scenario.Clock(Scenario.T0 + 30_000);
        var sink = new ProbeSink("count");
        await using var pipeline = new MetricsPipeline(Scenario.Options(time, shards: 2), [sink]);
        SeriesId[] ids = Register(pipeline, 16);
        pipeline.Start();
        PointWriter writer = pipeline.CreateWriter("handed-over");

        // One thread after the other (as async code after an await): allowed, nothing refused.
        for (int t = 0; t < 4; t++)
        {
            var thread = new Thread(() =>
            {
                for (int i = 0; i < 1000; i++)
                {
                    Assert.Equal(RejectReason.None, writer.Write(ids[i & 15], 1.0, Scenario.T0 + 10_000 + i));
                }
            });
            thread.Start();
            Assert.True(thread.Join(Signals.Bound), "a writing thread did not finish");
        }

        for (int i = 0; i < 10; i++)
        {
            await Task.Yield();
            Assert.Equal(RejectReason.None, writer.Write(ids[i], 1.0, Scenario.T0 + 10_000 + i));
        }

        writer.Dispose();
        await pipeline.DrainAsync().Within("drain");
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(0, m.WriterMisuse);
        Assert.Equal(4010, m.Offered);
        Assert.Equal(4010, m.Accepted);
        Identities.AssertSettled(m);
        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(4010, m.EmittedPoints);
        Assert.Equal(4010, sink.PointsRead);
    }

    [Fact]
    public async Task Write_EngineFlushesWhileTheOwnerWrites_ExactTotalsNoMisuse()
    {
        // The writer's gate is biased to its thread (plain stores); the engine's flush revokes the bias with a
        // process-wide barrier. Hammered here from a second thread: a hole in that handshake corrupts a batch
        // (points lost or doubled, a shard fault) and the totals below differ.
        var time = Scenario.Clock(Scenario.T0 + 30_000);
        var sink = new ProbeSink("count");
        await using var pipeline = new MetricsPipeline(Scenario.Options(time, shards: 2), [sink]);
        SeriesId[] ids = Register(pipeline, 16);
        pipeline.Start();
        PointWriter writer = pipeline.CreateWriter("flushed-under-foot");
        const int Points = 300_000;
        using var done = new CancellationTokenSource();
        long engineFlushes = 0;
        var engine = new Thread(() =>
        {
            while (!done.IsCancellationRequested)
            {
                writer.FlushIfQuiet(long.MaxValue);
                engineFlushes++;
            }
        });
        engine.Start();
        var owner = new Thread(() =>
        {
            for (int i = 0; i < Points; i++)
            {
                Assert.Equal(RejectReason.None, writer.Write(ids[i & 15], 1.0, Scenario.T0 + 10_000 + (i & 15)));
            }
        });
        owner.Start();
        Assert.True(owner.Join(Signals.Bound), "the owner did not finish");
        done.Cancel();
        Assert.True(engine.Join(Signals.Bound), "the engine thread did not finish");
        Assert.True(engineFlushes > 0);
        writer.Dispose();
        await pipeline.DrainAsync().Within("drain");
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.True(m.WriterMisuse == 0 && m.Faults == 0, $"misuse {m.WriterMisuse} faults {m.Faults}: {m.LastFault}");
        Assert.Equal(Points, m.Offered);
        Assert.Equal(Points, m.Accepted);
        Identities.AssertSettled(m);
        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(Points, m.EmittedPoints);
        Assert.Equal(Points, sink.PointsRead);
    }

    [Fact]
    public async Task SharedWriter_ThreadGoesQuiet_EngineFlushesItWithinTheFlushInterval()
    {
        var time = Scenario.Clock(Scenario.T0 + 30_000);
        var sink = new ProbeSink("count");
        await using var pipeline = new MetricsPipeline(Scenario.Options(time), [sink]);
        SeriesId id = pipeline.Registry.GetOrAdd("quiet_total");
        pipeline.Start();
        using SharedPointWriter shared = pipeline.CreateSharedWriter("app");
        await Task.Factory.StartNew(
            () =>
            {
                for (int i = 0; i < 5; i++)
                {
                    Assert.Equal(RejectReason.None, shared.Write(id, 1.0, Scenario.T0 + 10_000 + i));
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default).Within("five writes from another thread");
        await pipeline.DrainAsync().Within("drain");
        Assert.Equal(5, pipeline.GetMetrics().Pending);

        // Nobody calls Flush: the engine's flush timer hands the quiet thread's points over.
        time.Advance(pipeline.Options.ProducerFlushInterval * 2);
        await pipeline.DrainAsync().Within("drain");
        PipelineMetrics m = pipeline.GetMetrics();
        Assert.Equal(0, m.Pending);
        Assert.Equal(5, m.Accepted);
        Identities.AssertSettled(m);
    }

    [Fact]
    public async Task SharedWriter_TwoThreadsTakeTurns_HotSlotFollowsTheBusyThreadEachKeepsItsOwnWriter()
    {
        // The shared writer finds the busiest thread's writer by the thread's stack, not a thread-static read:
        // a thread that writes often takes that place over, and the other thread's writes still go through
        // its own writer (two writers, no misuse refused, every point counted).
        var time = Scenario.Clock(Scenario.T0 + 30_000);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(Scenario.Options(time, shards: 2), [sink]);
        SeriesId[] ids = Register(pipeline, 4);
        pipeline.Start();
        // Wait, not the shared writer's default DropNewest: the two bursts fill the small shard queues faster
        // than a fresh process's thread pool runs the shards, and this test counts writers, not drops.
        using SharedPointWriter shared = pipeline.CreateSharedWriter("app", BackpressureMode.Wait);
        bool linux = OperatingSystem.IsLinux();
        using var aTurn = new SemaphoreSlim(0);
        using var bTurn = new SemaphoreSlim(0);
        var seen = new List<string>();

        void Burst(string who, int n)
        {
            for (int i = 0; i < n; i++)
            {
                Assert.Equal(RejectReason.None, shared.Write(ids[i & 3], 1.0, Scenario.T0 + 10_000 + i));
            }

            lock (seen)
            {
                seen.Add($"{who}:{n}:{shared.IsHotThread}");
            }
        }

        Exception? failed = null;
        Thread Run(string who, SemaphoreSlim mine, SemaphoreSlim other, bool first) => new(() =>
        {
            try
            {
                for (int round = 0; round < 3; round++)
                {
                    if (!first || round > 0)
                    {
                        Assert.True(mine.Wait(Signals.Bound), "the other thread did not hand over");
                    }

                    Burst(who, 10);
                    Burst(who, 200);
                    other.Release();
                }
            }
            catch (Exception e)
            {
                failed = e;
                other.Release(10);
            }
        }) { IsBackground = true };

        Thread a = Run("a", aTurn, bTurn, first: true);
        Thread b = Run("b", bTurn, aTurn, first: false);
        a.Start();
        b.Start();
        Assert.True(a.Join(Signals.Bound * 2) && b.Join(Signals.Bound * 2), "a writing thread did not finish");
        Assert.Null(failed);

        // After 200 writes a thread holds the hot slot (where its stack can be read); after 10 writes following
        // the other thread's 200, it does not yet.
        string[] expected = linux
            ? ["a:10:False", "a:200:True", "b:10:False", "b:200:True", "a:10:False", "a:200:True", "b:10:False", "b:200:True", "a:10:False", "a:200:True", "b:10:False", "b:200:True"]
            : ["a:10:False", "a:200:False", "b:10:False", "b:200:False", "a:10:False", "a:200:False", "b:10:False", "b:200:False", "a:10:False", "a:200:False", "b:10:False", "b:200:False"];
        Assert.Equal(expected, seen);
        shared.Flush();
        await pipeline.DrainAsync().Within("drain");
        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertSettled(m);
        Assert.Equal(2 * 3 * 210, m.Offered);
        Assert.Equal(2 * 3 * 210, m.Accepted);
        Assert.Equal(0, m.WriterMisuse);
        Assert.Equal(2, Assert.Single(m.Sources).Writers);
    }

    [Fact]
    public async Task SharedWriter_EightThreads_ExactTotalsNoException()
    {
        const int Threads = 8;
        const int PerThread = 50_000;
        var time = Scenario.Clock(Scenario.T0 + 30_000);
        var sink = new CollectingSink();
        await using var pipeline = new MetricsPipeline(Scenario.Options(time, shards: 2), [sink]);
        SeriesId[] ids = Register(pipeline, 16);
        pipeline.Start();
        using SharedPointWriter shared = pipeline.CreateSharedWriter("app", BackpressureMode.Wait);

        var unexpected = new Exception?[Threads];
        using var start = new Barrier(Threads);
        Thread[] threads = [.. Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            try
            {
                for (int i = 0; i < PerThread; i++)
                {
                    // Half by id, half by labels; values chosen so every per-series sum is exact.
                    RejectReason reason = (i & 1) == 0
                        ? shared.Write(ids[i & 15], t + 1, Scenario.T0 + 10_000 + (i % 1000))
                        : shared.Write("misuse_total", [new Label("k", "k" + (i & 15))], t + 1, Scenario.T0 + 10_000 + (i % 1000));
                    if (reason != RejectReason.None)
                    {
                        throw new InvalidDataException($"write refused: {reason}");
                    }
                }
            }
            catch (Exception e)
            {
                unexpected[t] = e;
            }
        }) { IsBackground = true })];
        foreach (Thread thread in threads)
        {
            thread.Start();
        }

        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(Signals.Bound * 2), "a writing thread did not finish");
        }

        Assert.All(unexpected, Assert.Null);
        shared.Flush();
        await pipeline.DrainAsync().Within("drain");
        PipelineMetrics m = pipeline.GetMetrics();
        Identities.AssertSettled(m);
        Assert.Equal(Threads * PerThread, m.Offered);
        Assert.Equal(Threads * PerThread, m.Accepted);
        Assert.Equal(0, m.WriterMisuse);
        SourceMetrics source = Assert.Single(m.Sources);
        Assert.Equal(Threads, source.Writers);

        await pipeline.StopAsync().Within("stop");
        m = pipeline.GetMetrics();
        Identities.AssertStopped(m);
        Assert.Equal(0, m.Late);
        Assert.Equal(Threads * PerThread, m.EmittedPoints);

        // Each series got PerThread / 16 points from each thread, valued thread + 1.
        long perSeries = Threads * PerThread / 16;
        double sumPerSeries = PerThread / 16 * Enumerable.Range(1, Threads).Sum();
        var rows = sink.Rows.GroupBy(r => r.Key).ToDictionary(g => g.Key, g => (Count: g.Sum(r => r.Count), Sum: g.Sum(r => r.Sum)));
        Assert.Equal(16, rows.Count);
        Assert.All(rows.Values, r =>
        {
            Assert.Equal(perSeries, r.Count);
            Assert.Equal(sumPerSeries, r.Sum);
        });
    }
}
