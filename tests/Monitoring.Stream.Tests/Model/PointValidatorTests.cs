using Monitoring.Stream.Model;

namespace Monitoring.Stream.Tests.Model;

public class PointValidatorTests
{
    [Theory]
    [InlineData(0.0, RejectReason.None)]
    [InlineData(-1e300, RejectReason.None)]
    [InlineData(double.NaN, RejectReason.NotANumber)]
    [InlineData(double.PositiveInfinity, RejectReason.Infinity)]
    [InlineData(double.NegativeInfinity, RejectReason.Infinity)]
    public void ValidateValue_Cases(double value, RejectReason expected) => Assert.Equal(expected, PointValidator.ValidateValue(value));

    [Theory]
    [InlineData(0.0, RejectReason.None)]
    [InlineData(5.0, RejectReason.None)]
    [InlineData(-0.001, RejectReason.NegativeCounterIncrement)]
    [InlineData(double.NaN, RejectReason.NotANumber)]
    [InlineData(double.PositiveInfinity, RejectReason.Infinity)]
    public void ValidateCounterIncrement_Cases(double value, RejectReason expected) =>
        Assert.Equal(expected, PointValidator.ValidateCounterIncrement(value));

    [Fact]
    public void RejectReason_EveryValue_HasLabelAndDescription()
    {
        foreach (RejectReason reason in Enum.GetValues<RejectReason>())
        {
            Assert.NotEqual("unknown", reason.ToMetricLabel());
            Assert.NotEqual("unknown reason", reason.Describe());
        }
    }
}
