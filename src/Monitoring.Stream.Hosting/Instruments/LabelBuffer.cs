using System.Runtime.CompilerServices;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Instruments;

/// <summary>Room for a call's labels in a local: the label set of a labelled call is built on the stack.</summary>
[InlineArray(Length)]
internal struct LabelBuffer
{
    /// <summary>Labels held inline; a call with more takes an array.</summary>
    public const int Length = 8;

#pragma warning disable IDE0044, IDE0051 // the inline array's element: accessed through the span, never by name
    private Label _element;
#pragma warning restore IDE0044, IDE0051
}
