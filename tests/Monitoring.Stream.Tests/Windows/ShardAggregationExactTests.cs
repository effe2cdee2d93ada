using Microsoft.Extensions.Time.Testing;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Statistics;
using Monitoring.Stream.Tests.Hardening;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Windows;

/// <summary>
/// What a shard aggregates equals the same values added one by one to a <see cref="RunningMoments"/> and a
/// <see cref="DdSketch"/> per series and window, bit for bit, whichever way the shard took each point: its
/// in-place runs, or the general path for the points that end them (a series' first point in a window, another
/// window, zeros and negative values, bins outside the sketch's array, counters that must widen, late points).
/// </summary>
public class ShardAggregationExactTests
{
    private const long T0 = 1_800_000_000_000; // a multiple of 10 s

    [Theory]
    [InlineData(1, 200)]
    [InlineData(2, 200)]
    [InlineData(1, 12_000)] // more slots than a shard takes without prefetch hints (4,096): the hinted runs
    public async Task MixedStream_EveryWindowAndSeries_EqualsValuesAddedOneByOne(int shards, int seriesCount)
    {
        // The clock is ahead of the data, as in a replay: event time alone moves the watermark.
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(T0 + 60_000));
        var sink = new CollectingSink();
        var pipeline = new MetricsPipeline(WindowScenario.Options(time, shards), [sink]);
        pipeline.Start();
        var expected = new Dictionary<(long Window, int Series), (RunningMoments Moments, DdSketch Sketch)>();
        var random = new Random(11);
        long late = 0;
        await using (pipeline)
        {
            PointWriter writer = pipeline.CreateWriter("exact");

            void Write(int series, double value, long ts, bool isLate = false)
            {
                Assert.Equal(RejectReason.None, writer.Write("exact", [new Label("s", series.ToString(System.Globalization.CultureInfo.InvariantCulture))], value, ts));
                if (isLate)
                {
                    late++;
                    return;
                }

                long window = ts - (ts % 10_000);
                if (!expected.TryGetValue((window, series), out var state))
                {
                    state = (default, new DdSketch());
                }

                state.Moments.Add(value, ts);
                state.Sketch.Add(value);
                expected[(window, series)] = state;
            }

            // Two windows open at once, points of both interleaved (the second stays within the allowed lateness
            // of the first's end, so the first stays open).
            for (int i = 0; i < 150_000; i++)
            {
                int series = random.Next(10) == 0 ? 0 : random.Next(seriesCount);
                double value = random.Next(100) switch
                {
                    < 4 => 0,
                    < 9 => -Math.Exp(random.NextDouble() * 4),
                    < 11 => random.Next(2) == 0 ? 1e30 * (1 + random.NextDouble()) : 1e-30 * (1 + random.NextDouble()),
                    _ => Math.Exp(random.NextDouble() * 3),
                };

                // Series 0 repeats one value: its bin passes 255 (one byte) and 65,535 (two bytes) in the first window.
                if (series == 0)
                {
                    value = 5;
                }

                long ts = random.Next(10) == 0 ? T0 + 10_000 + random.Next(5_000) : T0 + random.Next(10_000);
                Write(series, value, ts);
            }

            for (int i = 0; i < 70_000; i++)
            {
                Write(0, 5, T0 + (i % 10_000));
            }

            // Points far ahead, of every series (so every shard sees them), close both windows; points of the
            // first window are late after them.
            for (int series = 0; series < 200; series++)
            {
                Write(series, 2.5, T0 + 25_000);
            }

            writer.Flush();
            await pipeline.DrainAsync();
            await Signals.Until(() => sink.Rows.Count(r => r.WindowStartMs < T0 + 20_000) == expected.Keys.Count(k => k.Window < T0 + 20_000),
                "the first two windows closing");
            for (int i = 0; i < 50; i++)
            {
                Write(random.Next(seriesCount), 1.5, T0 + random.Next(10_000), isLate: true);
            }

            writer.Flush();
            await pipeline.DrainAsync();
            await pipeline.StopAsync();
            Assert.Equal(late, pipeline.GetMetrics().Late);
        }

        IReadOnlyList<WindowRow> rows = sink.Rows;
        Assert.Equal(expected.Count, rows.Count);
        var buffer = new byte[1 << 16];
        var other = new byte[1 << 16];
        foreach (WindowRow row in rows)
        {
            int series = int.Parse(row.Labels.GetValue("s")!, System.Globalization.CultureInfo.InvariantCulture);
            (RunningMoments moments, DdSketch sketch) = expected[(row.WindowStartMs, series)];
            string at = $"series {series}, window {row.WindowStartMs - T0} ms";
            Assert.True(moments.Count == row.Count, $"{at}: count {row.Count}, expected {moments.Count}");
            Assert.True(moments.Sum.Equals(row.Sum) && moments.Min.Equals(row.Min) && moments.Max.Equals(row.Max), $"{at}: sum, min or max differ");
            Assert.True(moments.Mean.Equals(row.Mean) && moments.M2.Equals(row.M2) && moments.Last.Equals(row.Last), $"{at}: mean {row.Mean} / {moments.Mean}, M2 {row.M2} / {moments.M2}, last {row.Last} / {moments.Last}");
            Assert.NotNull(row.Sketch);
            int length = sketch.Serialize(buffer);
            int rowLength = row.Sketch.Serialize(other);
            Assert.True(buffer.AsSpan(0, length).SequenceEqual(other.AsSpan(0, rowLength)), $"{at}: the sketch differs from the values added one by one");
        }

        // The stream did reach every case the in-place runs leave to the general path.
        (RunningMoments heavy, DdSketch heavySketch) = expected[(T0, 0)];
        Assert.True(heavy.Count > 65_535, $"series 0 has {heavy.Count} points in one bin: its counter never needed four bytes");
        Assert.Equal((ulong)heavy.Count, heavySketch.Count);
        Assert.Contains(rows, r => r.Min < 0);
        Assert.Contains(rows, r => r.Max > 1e30);
    }
}
