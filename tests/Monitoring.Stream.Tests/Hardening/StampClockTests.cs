using System.Diagnostics;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>The clock thread whose millisecond stamps points written without a timestamp while writers are busy (each test has a clock of its own).</summary>
/// <remarks>Alone, with the probe of the same clock: these tests spin writers for hundreds of milliseconds, which on 2 cores
/// starves the classes running beside them.</remarks>
[Collection(Monitoring.Stream.Tests.BlackBox.Probe9SerialGroup.Name)]
public sealed class StampClockTests
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(10);

    [Fact]
    public void Read_BeforeAnyBatch_IsZeroSoWritersReadTheClockThemselves()
    {
        using var clock = new StampClock();
        Assert.Equal(0, clock.Read());
        Assert.False(clock.IsTicking);
    }

    [Fact]
    public void NoteBatches_FastEnough_StartsTheThread_ReadFollowsTheWallClock()
    {
        using var clock = new StampClock(checkTicks: 100, minBatches: 10);
        WaitUntil(() =>
        {
            clock.NoteBatches(5);
            return clock.Ticks >= 3;
        }, "batches at a high rate never started the clock thread");
        var elapsed = Stopwatch.StartNew();
        long previous = 0;
        int checkedReads = 0;
        while (elapsed.ElapsedMilliseconds < 300)
        {
            clock.NoteBatches(1);
            long before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            long stamp = clock.Read();
            long after = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            // Never ahead of the wall clock read after it; behind it only by the thread's delay (about a
            // millisecond; a second allowed for a machine that starves the thread).
            Assert.InRange(stamp, before - 1_000, after);
            Assert.True(stamp >= previous, $"the clock went back from {previous} to {stamp}");
            previous = stamp;
            checkedReads++;
        }

        Assert.True(checkedReads > 100, $"only {checkedReads} reads checked");
        Assert.True(clock.Ticks > 10, $"only {clock.Ticks} ticks in 300 ms");
    }

    [Fact]
    public void NoteBatches_Stopping_ThreadSleeps_ReadIsZero_AndTheNextFastBatchesWakeIt()
    {
        using var clock = new StampClock(checkTicks: 20, minBatches: 10);
        WaitUntil(() =>
        {
            clock.NoteBatches(5);
            return clock.IsTicking;
        }, "batches at a high rate never started the clock thread");

        WaitUntil(() => clock.Sleeps >= 1 && !clock.IsTicking, "the clock thread kept ticking without batches");
        Assert.Equal(0, clock.Read());
        long ticksAsleep = clock.Ticks;
        Thread.Sleep(60);
        Assert.Equal(ticksAsleep, clock.Ticks);

        WaitUntil(() =>
        {
            clock.NoteBatches(5);
            return clock.IsTicking && clock.Ticks > ticksAsleep;
        }, "fast batches did not wake the sleeping clock thread");
        Assert.NotEqual(0, clock.Read());
    }

    [Fact]
    public void NoteBatches_SlowWriter_NeverWakesTheThread()
    {
        // 10 batches within 20 ms keep it ticking; one batch every 5 ms is a quarter of that rate.
        using var clock = new StampClock(checkTicks: 20, minBatches: 10);
        var elapsed = Stopwatch.StartNew();
        int notes = 0;
        while (elapsed.ElapsedMilliseconds < 500)
        {
            clock.NoteBatches(1);
            notes++;
            Thread.Sleep(5);
        }

        Assert.True(notes > 20, $"only {notes} batches noted");
        Assert.Equal(0, clock.Ticks);
        Assert.Equal(0, clock.Read());
    }

    [Fact]
    public void NoteBatches_BusyWriter_KeepsTheThreadTicking()
    {
        // One batch a check period keeps it ticking; the writer notes thousands (a machine busy with other tests
        // may hold this thread off the CPU for a while, but not for a whole 100-tick period at a time).
        using var clock = new StampClock(checkTicks: 100, minBatches: 1);
        WaitUntil(() =>
        {
            clock.NoteBatches(5);
            return clock.IsTicking;
        }, "batches at a high rate never started the clock thread");
        var elapsed = Stopwatch.StartNew();
        while (elapsed.ElapsedMilliseconds < 400)
        {
            clock.NoteBatches(1);
            Thread.SpinWait(100);
        }

        Assert.Equal(0, clock.Sleeps);
        Assert.True(clock.IsTicking);
    }

    [Fact]
    public async Task StampNow_BusyWriterOnTheSystemClock_StampsTheClocksMillisecondWithinTheWallClock()
    {
        // Through a writer: enough batches start the process's clock thread, and every stamp, whichever
        // source it came from, lies within the wall clock read around it.
        var options = new MetricsPipelineOptions { TimeProvider = TimeProvider.System, BatchSize = 16 };
        await using var pipeline = new MetricsPipeline(options, []);
        pipeline.Start();
        using PointWriter writer = pipeline.CreateWriter("clock", BackpressureMode.DropNewest);
        SeriesId id = pipeline.Registry.GetOrAdd("stamped", [new Label("k", "v")]);
        var elapsed = Stopwatch.StartNew();
        long checkedStamps = 0;
        while (elapsed.ElapsedMilliseconds < 1_000)
        {
            writer.Write(id, 1.0);
            long before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            long stamp = writer.StampNow();
            long after = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            Assert.InRange(stamp, before - 1_000, after + 20);
            checkedStamps++;
        }

        Assert.True(checkedStamps > 1_000, $"only {checkedStamps} stamps checked");
        Assert.True(StampClock.Default.Ticks > 0, "a writer starting thousands of batches a second never started the clock thread");
    }

    private static void WaitUntil(Func<bool> condition, string failure)
    {
        var wait = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(wait.Elapsed < s_bound, failure);
            Thread.Sleep(1);
        }
    }
}
