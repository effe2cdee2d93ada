using System.Diagnostics;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>Points written without a timestamp are stamped with the engine's clock.</summary>
public sealed class WriterClockTests
{
    [Fact]
    public async Task StampNow_SystemClock_WithinTheCoarseTickOfTheWallClockAcrossReanchors()
    {
        // The system clock path stamps from the coarse monotonic tick plus an offset taken again every
        // second, or from the millisecond the clock thread publishes while the process's writers are busy
        // (another test's may be): over 1.5 s (at least one re-anchor) every stamp lies within the wall clock
        // read around it, at most the tick's step ahead (up to 4 ms on Linux; 20 ms allowed) and behind it by
        // the tick's step or by the clock thread's delay, which a machine busy with other tests can stretch to
        // tens of milliseconds (a second allowed: a wrong offset is off by far more).
        var options = new MetricsPipelineOptions { TimeProvider = TimeProvider.System };
        await using var pipeline = new MetricsPipeline(options, []);
        using PointWriter writer = pipeline.CreateWriter("clock");
        var elapsed = Stopwatch.StartNew();
        long checkedStamps = 0;
        long previous = 0;
        while (elapsed.ElapsedMilliseconds < 1_500)
        {
            long before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            long stamp = writer.StampNow();
            long after = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            Assert.InRange(stamp, before - 1_000, after + 20);
            Assert.True(stamp >= previous - 1_000, $"a stamp went back by {previous - stamp} ms");
            previous = stamp;
            checkedStamps++;
        }

        Assert.True(checkedStamps > 1_000, $"only {checkedStamps} stamps checked");
    }
}
