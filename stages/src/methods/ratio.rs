//! Exact rational numbers for the Countdown verifier: reduced `i128` fractions
//! whose every operation is checked, so hostile input yields an error value
//! (`Overflow`, `DivByZero`) instead of a panic or a rounded float.

use std::fmt;

/// An exact fraction `num/den`, always reduced with `den > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    num: i128,
    den: i128,
}

/// Why an expression has no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalError {
    /// Not a well-formed expression.
    Parse,
    /// A division by zero.
    DivByZero,
    /// An intermediate value does not fit in `i128`.
    Overflow,
}

impl EvalError {
    /// The `Verdict::reason` string for this failure.
    pub fn reason(self) -> &'static str {
        match self {
            EvalError::Parse => "parse_error",
            EvalError::DivByZero => "div_by_zero",
            EvalError::Overflow => "overflow",
        }
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Ratio {
    /// `num/den` reduced; errors on a zero denominator or an unrepresentable result.
    pub fn new(num: i128, den: i128) -> Result<Ratio, EvalError> {
        if den == 0 {
            return Err(EvalError::DivByZero);
        }
        let negative = (num < 0) != (den < 0);
        let (un, ud) = (num.unsigned_abs(), den.unsigned_abs());
        let g = gcd(un, ud).max(1);
        let n = i128::try_from(un / g).map_err(|_| EvalError::Overflow)?;
        let d = i128::try_from(ud / g).map_err(|_| EvalError::Overflow)?;
        Ok(Ratio {
            num: if negative { -n } else { n },
            den: d,
        })
    }

    /// The integer `n`.
    pub fn int(n: i64) -> Ratio {
        Ratio {
            num: n as i128,
            den: 1,
        }
    }
    /// Numerator (carries the sign).
    pub fn numer(self) -> i128 {
        self.num
    }
    /// Denominator, always positive.
    pub fn denom(self) -> i128 {
        self.den
    }

    pub(crate) fn add(self, o: Ratio) -> Result<Ratio, EvalError> {
        let ov = EvalError::Overflow;
        let a = self.num.checked_mul(o.den).ok_or(ov)?;
        let b = o.num.checked_mul(self.den).ok_or(ov)?;
        Ratio::new(
            a.checked_add(b).ok_or(ov)?,
            self.den.checked_mul(o.den).ok_or(ov)?,
        )
    }
    pub(crate) fn neg(self) -> Result<Ratio, EvalError> {
        Ok(Ratio {
            num: self.num.checked_neg().ok_or(EvalError::Overflow)?,
            den: self.den,
        })
    }
    pub(crate) fn mul(self, o: Ratio) -> Result<Ratio, EvalError> {
        let ov = EvalError::Overflow;
        Ratio::new(
            self.num.checked_mul(o.num).ok_or(ov)?,
            self.den.checked_mul(o.den).ok_or(ov)?,
        )
    }
    pub(crate) fn div(self, o: Ratio) -> Result<Ratio, EvalError> {
        if o.num == 0 {
            return Err(EvalError::DivByZero);
        }
        let ov = EvalError::Overflow;
        Ratio::new(
            self.num.checked_mul(o.den).ok_or(ov)?,
            self.den.checked_mul(o.num).ok_or(ov)?,
        )
    }
}

impl fmt::Display for Ratio {
    /// `24` for integers, `17/3` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduces_normalises_and_reports_edges() {
        let r = Ratio::new(6, -4).unwrap();
        assert_eq!((r.numer(), r.denom()), (-3, 2));
        assert_eq!(r.to_string(), "-3/2");
        assert_eq!(Ratio::new(1, 0), Err(EvalError::DivByZero));
        assert_eq!(Ratio::new(i128::MIN, 1), Err(EvalError::Overflow));
        assert_eq!(Ratio::new(i128::MIN, i128::MIN).unwrap(), Ratio::int(1));
        let big = Ratio::new(i128::MAX, 1).unwrap();
        assert_eq!(big.add(Ratio::int(1)), Err(EvalError::Overflow));
        assert_eq!(big.neg().unwrap().numer(), -i128::MAX);
        assert_eq!(Ratio::int(1).div(Ratio::int(0)), Err(EvalError::DivByZero));
        assert_eq!(
            Ratio::new(1, 3).unwrap().mul(Ratio::int(3)).unwrap(),
            Ratio::int(1)
        );
    }
}
