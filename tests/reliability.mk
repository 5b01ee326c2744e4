# reliability tests (bad inputs, fuzz smoke)
