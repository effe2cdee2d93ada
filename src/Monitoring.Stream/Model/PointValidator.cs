using System.Runtime.CompilerServices;
using Monitoring.Stream.Statistics;

namespace Monitoring.Stream.Model;

/// <summary>Checks values before they reach the statistics, which assume finite input of bounded magnitude.</summary>
public static class PointValidator
{
    /// <summary>The largest magnitude accepted: beyond it, moments of a series could overflow (see <see cref="RunningMoments.MaxMagnitude"/>).</summary>
    public const double MaxValueMagnitude = RunningMoments.MaxMagnitude;

    /// <summary>Whether a value is accepted: finite and of magnitude at most <see cref="MaxValueMagnitude"/>.</summary>
    /// <remarks>PERF: one compare, false for NaN too, the same cost as <see cref="double.IsFinite"/>: a hot
    /// path tests this and calls <see cref="ValidateValue"/> only to learn the reason of a refusal.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsAccepted(double value) => Math.Abs(value) <= MaxValueMagnitude;

    /// <summary>Refuses NaN, infinities and magnitudes beyond <see cref="MaxValueMagnitude"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static RejectReason ValidateValue(double value)
    {
        if (IsAccepted(value))
        {
            return RejectReason.None;
        }

        return double.IsNaN(value) ? RejectReason.NotANumber
            : double.IsInfinity(value) ? RejectReason.Infinity
            : RejectReason.ValueOutOfRange;
    }

    /// <summary>Refuses what <see cref="ValidateValue"/> refuses, and negative amounts, which a monotonic counter cannot take.</summary>
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
