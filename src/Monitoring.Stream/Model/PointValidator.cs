using System.Runtime.CompilerServices;

namespace Monitoring.Stream.Model;

/// <summary>Checks values before they reach the statistics, which assume finite input.</summary>
public static class PointValidator
{
    /// <summary>Refuses NaN and infinities.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static RejectReason ValidateValue(double value)
    {
        // PERF: one test for the common case; only a non-finite value pays for telling NaN from infinity.
        if (double.IsFinite(value))
        {
            return RejectReason.None;
        }

        return double.IsNaN(value) ? RejectReason.NotANumber : RejectReason.Infinity;
    }

    /// <summary>Refuses NaN, infinities and negative amounts, which a monotonic counter cannot take.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static RejectReason ValidateCounterIncrement(double increment)
    {
        RejectReason reason = ValidateValue(increment);
        if (reason != RejectReason.None)
        {
            return reason;
        }

        return increment < 0 ? RejectReason.NegativeCounterIncrement : RejectReason.None;
    }
}
