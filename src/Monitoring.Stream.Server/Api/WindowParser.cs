using System.Globalization;

namespace Monitoring.Stream.Server.Api;

/// <summary>Parses spans written as <c>30s</c>, <c>15m</c>, <c>1h</c>, <c>7d</c> or <c>500ms</c>.</summary>
internal static class WindowParser
{
    /// <summary>The longest span accepted.</summary>
    public static readonly TimeSpan Max = TimeSpan.FromDays(366);

    /// <summary>Parses <paramref name="text"/>; false when it is not a positive span up to <see cref="Max"/>.</summary>
    public static bool TryParse(string? text, out TimeSpan span)
    {
        span = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        text = text.Trim();
        (string number, double unitMs) = text.EndsWith("ms", StringComparison.Ordinal) ? (text[..^2], 1.0)
            : text.EndsWith('s') ? (text[..^1], 1000.0)
            : text.EndsWith('m') ? (text[..^1], 60_000.0)
            : text.EndsWith('h') ? (text[..^1], 3_600_000.0)
            : text.EndsWith('d') ? (text[..^1], 86_400_000.0)
            : (string.Empty, 0);
        if (unitMs == 0 || !double.TryParse(number, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double n) || !(n > 0))
        {
            return false;
        }

        double ms = n * unitMs;
        if (ms < 1 || ms > Max.TotalMilliseconds)
        {
            return false;
        }

        span = TimeSpan.FromMilliseconds(Math.Round(ms));
        return true;
    }
}
