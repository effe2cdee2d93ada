using CsCheck;
using Monitoring.Stream.Windows;

namespace Monitoring.Stream.Tests.Hardening;

/// <summary>
/// Window selection over the whole range of <see cref="long"/> (through the internal helper: the writers'
/// bounds keep such timestamps from the shards): every window contains its point, and is aligned to the
/// epoch wherever its start is a <see cref="long"/>.
/// </summary>
public class WindowArithmeticTests
{
    private const long MaxWindowMs = 366L * 24 * 3600 * 1000;

    private static void AssertWindowOf(long ts, long windowMs)
    {
        long start = ShardAggregator.WindowStartOf(ts, windowMs);
        (Int128 q, Int128 r) = Int128.DivRem(ts, windowMs);
        Int128 floorStart = r < 0 ? (q - 1) * windowMs : q * windowMs;
        Assert.True(start <= ts && ts - (Int128)start < windowMs, $"ts {ts} not in [{start}, {start} + {windowMs})");
        Assert.Equal(floorStart >= long.MinValue ? floorStart : long.MinValue, (Int128)start);
    }

    [Fact]
    public void WindowStartOf_AnyTimestampAndWindow_ContainsItAndAlignedWhenRepresentable()
    {
        Gen.Select(Gen.Long, Gen.Long[1, MaxWindowMs]).Sample(AssertWindowOf, iter: 100_000);
        Gen.Select(Gen.Long[long.MinValue, long.MinValue + MaxWindowMs], Gen.Long[1, MaxWindowMs]).Sample(AssertWindowOf, iter: 20_000);
        Gen.Select(Gen.Long[long.MaxValue - MaxWindowMs, long.MaxValue], Gen.Long[1, MaxWindowMs]).Sample(AssertWindowOf, iter: 20_000);
    }

    [Theory]
    [InlineData(long.MaxValue, 1)]
    [InlineData(long.MaxValue, 10_000)]
    [InlineData(long.MaxValue, MaxWindowMs)]
    [InlineData(long.MinValue, 1)]
    [InlineData(long.MinValue, 10_000)]
    [InlineData(long.MinValue + 1, MaxWindowMs)]
    [InlineData(long.MinValue + MaxWindowMs, MaxWindowMs)]
    [InlineData(-1, 10_000)]
    [InlineData(0, 10_000)]
    [InlineData(-10_000, 10_000)]
    [InlineData(-10_001, 10_000)]
    public void WindowStartOf_Edges_ContainsItAndAlignedWhenRepresentable(long ts, long windowMs) => AssertWindowOf(ts, windowMs);
}
