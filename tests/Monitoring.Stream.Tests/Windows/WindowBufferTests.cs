using CsCheck;
using Monitoring.Stream.Windows;

namespace Monitoring.Stream.Tests.Windows;

public class WindowBufferTests
{
    [Fact]
    public void SortTouched_AnySetOfSlots_AscendingAndReusableAcrossWindows()
    {
        // One buffer per sample (CsCheck samples run in parallel), used for two windows in a row.
        Gen.Select(Gen.Int[0, 999].HashSet[0, 400], Gen.Int[0, 999].HashSet[0, 400]).Sample((first, second) =>
        {
            var window = new WindowBuffer(capacity: 1000, withSketches: false, 0.01, 2048);
            foreach (HashSet<int> slots in new[] { first, second })
            {
                foreach (int slot in slots)
                {
                    window.Add(slot, 1.0, 0);
                }

                window.SortTouched();

                Assert.Equal(slots.Order(), window.Touched.AsSpan(0, window.TouchedCount).ToArray());
                window.Reset();
            }
        }, iter: 200);
    }

    [Fact]
    public void SortTouched_AfterGrow_CoversNewSlots()
    {
        var window = new WindowBuffer(capacity: 64, withSketches: false, 0.01, 2048);
        window.Add(63, 1.0, 0);
        window.SortTouched();
        window.Grow(200);
        window.Add(199, 1.0, 0);
        window.Add(5, 1.0, 0);

        window.SortTouched();

        Assert.Equal([5, 63, 199], window.Touched.AsSpan(0, window.TouchedCount).ToArray());
    }
}
