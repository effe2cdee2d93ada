using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>Shared settings of the hardening tests: a fake clock and small, deterministic windows.</summary>
internal static class Scenario
{
    /// <summary>An instant aligned to every window size used here (ms since the epoch).</summary>
    public const long T0 = 1_800_000_000_000;

    public static FakeTimeProvider Clock(long unixMs) => new(DateTimeOffset.FromUnixTimeMilliseconds(unixMs));

    /// <summary>One-second windows, no lateness, small batches, on <paramref name="time"/>.</summary>
    public static MetricsPipelineOptions Options(FakeTimeProvider time, int shards = 1) => new()
    {
        ShardCount = shards,
        WindowSize = TimeSpan.FromSeconds(1),
        AllowedLateness = TimeSpan.Zero,
        BatchSize = 32,
        ShardQueueBatches = 16,
        TimeProvider = time,
        Instance = "hardening",
    };

    /// <summary>
    /// Writes <paramref name="perWindow"/> points into each of the one-second windows
    /// <paramref name="first"/> .. <paramref name="first"/> + <paramref name="windows"/> - 1 after
    /// <see cref="T0"/>, flushing after each window, so the next window's data closes the one before.
    /// </summary>
    /// <returns>The points written.</returns>
    public static long WriteWindows(PointWriter writer, SeriesId series, int first, int windows, int perWindow = 3)
    {
        long written = 0;
        for (int w = first; w < first + windows; w++)
        {
            for (int i = 0; i < perWindow; i++)
            {
                Assert.Equal(RejectReason.None, writer.Write(series, w + (i * 0.25), T0 + (w * 1000L) + 100 + i));
                written++;
            }

            writer.Flush();
        }

        return written;
    }
}
